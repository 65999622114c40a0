"""Constant-Q and variable-Q transforms in dB (nnAudio), as librosa.cqt / librosa.vqt
followed by amplitude_to_db."""

from __future__ import annotations

from mgr.features.base import Frontend, Squared, check_below_nyquist

C1_HZ = 32.703195662574764  # librosa.note_to_hz("C1"), librosa's default fmin


def cqt_power(sample_rate: int, hop_length: int, fmin: float, n_bins: int, bins_per_octave: int,
              filter_scale: float = 1.0, window: str = "hann", trainable: bool = False):
    """A module: waveform [B, T] -> CQT power [B, n_bins, frames] (nnAudio CQT1992v2, centred frames).

    CQT1992v2 convolves with full-length kernels at the input rate; librosa downsamples
    octave by octave. Their difference stays in the leakage floor (tests/test_feature_parity.py).
    """
    from nnAudio.features import CQT1992v2

    check_below_nyquist(fmin * 2 ** ((n_bins - 1) / bins_per_octave), sample_rate, "The top CQT bin")
    return Squared(CQT1992v2(sr=sample_rate, hop_length=hop_length, fmin=fmin, n_bins=n_bins,
                             bins_per_octave=bins_per_octave, filter_scale=filter_scale, window=window,
                             pad_mode="constant", trainable=trainable, output_format="Magnitude", verbose=False))


class CQTFrontend(Frontend):
    def __init__(self, sample_rate: int, hop_length: int = 512, fmin: float = C1_HZ, n_bins: int = 84,
                 bins_per_octave: int = 12, filter_scale: float = 1.0, window: str = "hann",
                 top_db: float | None = 80.0, trainable: bool = False):
        super().__init__(sample_rate, top_db)
        self.transform = cqt_power(sample_rate, hop_length, fmin, n_bins, bins_per_octave, filter_scale, window, trainable)


class VQTFrontend(Frontend):
    """Variable-Q: bandwidths widened by `gamma` Hz at low frequencies (nnAudio VQT).
    gamma=null takes librosa's default, the ERB-based 24.7 * alpha / 0.108."""

    def __init__(self, sample_rate: int, hop_length: int = 512, fmin: float = C1_HZ, n_bins: int = 84,
                 bins_per_octave: int = 12, gamma: float | None = None, filter_scale: float = 1.0,
                 window: str = "hann", top_db: float | None = 80.0, trainable: bool = False):
        super().__init__(sample_rate, top_db)
        from nnAudio.features import VQT

        check_below_nyquist(fmin * 2 ** ((n_bins - 1) / bins_per_octave), sample_rate, "The top VQT bin")
        if gamma is None:
            r = 2 ** (1 / bins_per_octave)
            alpha = (r**2 - 1) / (r**2 + 1)  # librosa's relative bandwidth of a bin
            gamma = 24.7 * alpha / 0.108
        self.transform = Squared(VQT(sr=sample_rate, hop_length=hop_length, fmin=fmin, n_bins=n_bins,
                                     bins_per_octave=bins_per_octave, gamma=gamma, filter_scale=filter_scale,
                                     window=window, trainable=trainable, output_format="Magnitude", verbose=False))
