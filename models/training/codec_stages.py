"""Stage 1, the codec (encoder and decoder from scratch), and stage 1b, the decoder alone on the
frozen encoder's latents, hearing each latent's audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..profile_config import ProfileConfig
from ..tiny_codec import FRAMES_PER_LATENT, TinyCodec
from .data import Data, clip_audio_tokens
from .loop import autocast, optimise, resume, save, stage_steps
from .losses import mouth_weighted_mean, reconstruction_loss


def _codec_batch(data: Data, rng: np.random.Generator, batch: int, latents: int, cfg: ProfileConfig):
    """`latents` x 4 consecutive frames from random clips, the frame shown before them (the reference
    image at a clip's start, as in a stream), the clips' reference images and the latents' audio tokens."""
    n_frames = latents * FRAMES_PER_LATENT
    clip = rng.integers(0, len(data.video), batch)
    first = rng.integers(0, data.video.shape[1] // FRAMES_PER_LATENT - latents, batch)
    frames = Data.to_tensor(np.stack([data.video[c, f * FRAMES_PER_LATENT:f * FRAMES_PER_LATENT + n_frames]
                                      for c, f in zip(clip, first)]))
    previous = Data.to_tensor(np.stack([data.video[c, f * FRAMES_PER_LATENT - 1] if f else data.refs[c]
                                        for c, f in zip(clip, first)]))
    audio = torch.stack([clip_audio_tokens(cfg, data.mel, data.audio[c], f, latents) for c, f in zip(clip, first)])
    return frames, previous, Data.to_tensor(data.refs[clip]), audio


def _decode_for_training(codec: TinyCodec, z: torch.Tensor, ref_latent: torch.Tensor, refs: torch.Tensor,
                         previous: torch.Tensor, audio: torch.Tensor, rng: np.random.Generator, bf16: bool) -> torch.Tensor:
    """Decode unit-scale latents as a stream would, with two perturbations: noise at 5% of how much the
    latents vary between clips and frames (so the decoder tolerates the DiT's small latent errors and
    the encoder cannot hide its signal under it), and half the batch decoded without the reference
    image (so everything, the mouth above all, must also be in the latents). Why: TINY_MODEL_CARD.md."""
    z = z + 0.05 * (z - z.mean(0, keepdim=True)).detach().std() * torch.randn_like(z)
    blind = torch.from_numpy(rng.random(len(z)) < 0.5).float()[:, None, None, None]
    with autocast(bf16):
        state = codec.start_stream(ref_latent, refs * (1 - blind))._replace(last_frame=previous)
        return codec.decode(z, state, audio)[0].float()


def train_codec(out: Path, steps: int, batch: int, lr: float, cfg: ProfileConfig, bf16: bool = True) -> None:
    data = Data(out, cfg)
    codec = TinyCodec.from_config(cfg)
    opt = torch.optim.AdamW(codec.parameters(), lr=lr)
    for step, rng, losses in stage_steps(out / "codec.pt", codec, opt, lr, steps, seed=0, desc="codec"):
        frames, previous, refs, audio = _codec_batch(data, rng, batch, 3, cfg)
        with autocast(bf16):
            z = codec.encode(frames).float()
            ref_latent = codec.encode_reference(refs).float()
        spread = z.detach().std()  # unit-scale latents
        # The decoder hears nothing in this stage: the latents alone must carry the mouth. It learns to
        # hear in the decoder stage, once the encoder is frozen.
        silence = torch.zeros_like(audio)
        recon = _decode_for_training(codec, z / spread, ref_latent / spread, refs, previous, silence, rng, bf16)
        losses.append(optimise(opt, reconstruction_loss(recon, frames), codec.parameters(), max_norm=None))
        with torch.no_grad():
            codec.latent_scale.mul_(spread ** 0.1)  # running estimate, in log space
    with torch.no_grad():  # latents of unit scale for the DiT
        frames = Data.to_tensor(data.video[:16, :FRAMES_PER_LATENT * 4])
        codec.latent_scale.fill_(codec.encode(frames).std().item() * codec.latent_scale.item())
    save(out / "codec.pt", codec, opt, steps, [])


def train_decoder(out: Path, steps: int, batch: int, lr: float, cfg: ProfileConfig, bf16: bool = True) -> None:
    """The decoder alone on the frozen encoder's latents (the DiT's latents keep their meaning, so it
    may run before or after the teacher), also matching the change between consecutive frames (above
    all across latent boundaries) and hearing each latent's audio tokens. Why: TINY_MODEL_CARD.md."""
    data = Data(out, cfg)
    codec = TinyCodec.from_config(cfg)
    resume(out / "codec.pt", codec, None)
    codec.encoder.requires_grad_(False)
    opt = torch.optim.AdamW(codec.decoder.parameters(), lr=lr)
    for step, rng, losses in stage_steps(out / "decoder.pt", codec, opt, lr, steps, seed=30_000, desc="decoder"):
        frames, previous, refs, audio = _codec_batch(data, rng, batch, 4, cfg)
        with torch.no_grad(), autocast(bf16):
            z, ref_latent = codec.encode(frames).float(), codec.encode_reference(refs).float()
        recon = _decode_for_training(codec, z, ref_latent, refs, previous, audio, rng, bf16)
        # change error = the difference of consecutive frames' errors; across a latent boundary it was
        # what made the jump, so those transitions count again on their own
        change_error = ((recon[:, 1:] - recon[:, :-1]) - (frames[:, 1:] - frames[:, :-1])).abs()
        at_boundary = change_error[:, FRAMES_PER_LATENT - 1::FRAMES_PER_LATENT]
        loss = (reconstruction_loss(recon, frames) + 2.0 * mouth_weighted_mean(change_error, 8.0)
                + 4.0 * mouth_weighted_mean(at_boundary, 8.0))
        losses.append(optimise(opt, loss, codec.decoder.parameters(), max_norm=None))


def trained_codec(out: Path, cfg: ProfileConfig) -> TinyCodec:
    """The codec with the fine-tuned decoder where that stage ran."""
    codec = TinyCodec.from_config(cfg)
    resume(out / "decoder.pt" if (out / "decoder.pt").is_file() else out / "codec.pt", codec, None)
    return codec
