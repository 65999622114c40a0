"""Band-limited resampling of waveform batches in torch, on the model's device: the data's
rate to a pretrained encoder's (soxr, the data pipeline's resampler, works on numpy arrays).

Polyphase windowed-sinc interpolation: with the ratio up/down in lowest terms, output sample
q * up + j lies at input time q * down + j * down / up, so phase j is one strided conv1d of
the input with the sinc kernel shifted by j * down / up (kernels span width + down + width
input samples, so every shift fits). The low-pass cut-off is the lower of
the two Nyquist frequencies (times `ROLLOFF`, so the Hann window's transition band falls below
it); `ZERO_CROSSINGS` sets the kernel's half-length in periods of the cut-off.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ZERO_CROSSINGS = 16
ROLLOFF = 0.95


class Resampler(nn.Module):
    def __init__(self, from_rate: int, to_rate: int):
        super().__init__()
        g = math.gcd(int(from_rate), int(to_rate))
        self.up, self.down = int(to_rate) // g, int(from_rate) // g
        cutoff = min(1.0, self.up / self.down) * ROLLOFF  # in units of the input's Nyquist frequency
        self.width = math.ceil(ZERO_CROSSINGS / cutoff)  # half-length in input samples
        taps = torch.arange(-self.width, self.width + self.down, dtype=torch.float64)
        t = taps[None, :] - torch.arange(self.up, dtype=torch.float64)[:, None] * self.down / self.up  # [up, taps]
        window = torch.where(t.abs() <= self.width, 0.5 + 0.5 * torch.cos(math.pi * t / self.width), 0.0)
        kernel = cutoff * torch.sinc(cutoff * t) * window
        self.register_buffer("kernel", kernel[:, None, :].float(), persistent=False)  # [up, 1, taps]

    def output_length(self, n: int) -> int:
        return math.ceil(n * self.up / self.down)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, T] at from_rate -> [B, ceil(T * to_rate / from_rate)] at to_rate."""
        if self.up == self.down:
            return wave
        n_out = self.output_length(wave.shape[-1])
        frames = math.ceil(n_out / self.up)  # output samples per phase
        right = max(0, (frames - 1) * self.down + self.kernel.shape[-1] - self.width - wave.shape[-1])
        padded = nn.functional.pad(wave[:, None, :], (self.width, right))
        kernel = self.kernel.to(padded.dtype)
        phases = nn.functional.conv1d(padded, kernel, stride=self.down)[..., :frames]  # [B, up, frames]
        return phases.transpose(1, 2).reshape(len(wave), -1)[:, :n_out]
