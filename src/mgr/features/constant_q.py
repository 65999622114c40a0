"""Constant-Q and variable-Q transforms in dB, as librosa.cqt / librosa.vqt followed by
amplitude_to_db: backend=nnaudio (CQT1992v2 / VQT: full-length kernels at the input rate)
or backend=torch (mgr.features.multirate: librosa's own multirate algorithm in torch)."""

from __future__ import annotations

from mgr.features.base import Frontend, Squared, check_backend, check_below_nyquist
from mgr.features.multirate import MultirateVQT

C1_HZ = 32.703195662574764  # librosa.note_to_hz("C1"), librosa's default fmin


def cqt_power(sample_rate: int, hop_length: int, fmin: float, n_bins: int, bins_per_octave: int,
              filter_scale: float = 1.0, window: str = "hann", trainable: bool = False, backend: str = "torch"):
    """A module: waveform [B, T] -> CQT power [B, n_bins, T // hop_length + 1] (centred frames).

    nnAudio's CQT1992v2 convolves with full-length kernels at the input rate; librosa, and
    backend=torch, downsample octave by octave. The nnAudio difference stays in the
    leakage floor; the torch backend matches librosa to float32 rounding (tests/test_feature_parity.py).
    """
    check_backend(backend, trainable)
    check_below_nyquist(fmin * 2 ** ((n_bins - 1) / bins_per_octave), sample_rate, "The top CQT bin")
    if backend == "torch":
        return MultirateVQT(sample_rate, hop_length, fmin, n_bins, bins_per_octave, 0.0, filter_scale, window)
    from nnAudio.features import CQT1992v2

    return Squared(CQT1992v2(sr=sample_rate, hop_length=hop_length, fmin=fmin, n_bins=n_bins,
                             bins_per_octave=bins_per_octave, filter_scale=filter_scale, window=window,
                             pad_mode="constant", trainable=trainable, output_format="Magnitude", verbose=False))


class CQTFrontend(Frontend):
    def __init__(self, sample_rate: int, hop_length: int = 512, fmin: float = C1_HZ, n_bins: int = 84,
                 bins_per_octave: int = 12, filter_scale: float = 1.0, window: str = "hann",
                 top_db: float | None = 80.0, trainable: bool = False, backend: str = "torch"):
        super().__init__(sample_rate, top_db)
        self.transform = cqt_power(sample_rate, hop_length, fmin, n_bins, bins_per_octave, filter_scale, window,
                                   trainable, backend)


class VQTFrontend(Frontend):
    """Variable-Q: bandwidths widened by `gamma` Hz at low frequencies.
    gamma=null takes librosa's default, the ERB-based 24.7 * alpha / 0.108."""

    def __init__(self, sample_rate: int, hop_length: int = 512, fmin: float = C1_HZ, n_bins: int = 84,
                 bins_per_octave: int = 12, gamma: float | None = None, filter_scale: float = 1.0,
                 window: str = "hann", top_db: float | None = 80.0, trainable: bool = False, backend: str = "torch"):
        super().__init__(sample_rate, top_db)
        check_backend(backend, trainable)
        check_below_nyquist(fmin * 2 ** ((n_bins - 1) / bins_per_octave), sample_rate, "The top VQT bin")
        if gamma is None:
            r = 2 ** (1 / bins_per_octave)
            alpha = (r**2 - 1) / (r**2 + 1)  # librosa's relative bandwidth of a bin
            gamma = 24.7 * alpha / 0.108
        if backend == "torch":
            self.transform = MultirateVQT(sample_rate, hop_length, fmin, n_bins, bins_per_octave, gamma, filter_scale,
                                          window)
            return
        from nnAudio.features import VQT

        self.transform = Squared(VQT(sr=sample_rate, hop_length=hop_length, fmin=fmin, n_bins=n_bins,
                                     bins_per_octave=bins_per_octave, gamma=gamma, filter_scale=filter_scale,
                                     window=window, trainable=trainable, output_format="Magnitude", verbose=False))
