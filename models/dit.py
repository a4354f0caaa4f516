"""The audio-conditioned video DiT: diffusers' Wan transformer with EchoMimicV3's audio branch.

The audio branch lives inside each block's cross-attention ("coupled-decoupled"): one shared query
(`to_q` + `norm_q`) and output projection (`to_out`), separate keys/values for text, the CLIP image
tokens and audio; the three attention outputs are summed before `to_out`. Audio attention is
frame-local: the tokens of latent frame t attend only to the audio tokens of latent frame t.
The audio and text outputs are weighted by the timestep phase of each token (phase-aware allocation).
As in EchoMimicV3, the audio output can be limited to a face box (`audio_mask`, one weight per token of a
frame) and audio slots outside the audio can be exact zeros after the projection (`audio_slots`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusers.configuration_utils import register_to_config
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel


class AudioProjection(nn.Module):
    """Per-token projection of audio features into the DiT width (EchoMimicV3 preview's `audio2token`)."""

    def __init__(self, audio_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(audio_dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(audio))


@dataclass
class CrossContext:
    """Keys/values of the static cross-attention inputs (text and image), per block, per session.

    Text and reference image do not change during a session, so their projections are computed once.
    """

    text_kv: list[tuple[torch.Tensor, torch.Tensor]]
    image_kv: list[tuple[torch.Tensor, torch.Tensor]] | None

    def repeat(self, n: int) -> "CrossContext":
        rep = lambda kv: (kv[0].repeat(n, 1, 1, 1), kv[1].repeat(n, 1, 1, 1))  # noqa: E731
        return CrossContext(
            [rep(kv) for kv in self.text_kv],
            None if self.image_kv is None else [rep(kv) for kv in self.image_kv],
        )

    @staticmethod
    def cat(contexts: list["CrossContext"]) -> "CrossContext":
        def cat_kv(kvs):
            return (torch.cat([k for k, _ in kvs]), torch.cat([v for _, v in kvs]))

        text = [cat_kv(layer) for layer in zip(*[c.text_kv for c in contexts])]
        image = None
        if contexts[0].image_kv is not None:
            image = [cat_kv(layer) for layer in zip(*[c.image_kv for c in contexts])]
        return CrossContext(text, image)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # (B, L, heads, d) layout in and out
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def _per_frame(x: torch.Tensor, frames: int, fn) -> torch.Tensor:
    """Apply fn to x (B, L, D) viewed as (B, frames, L/frames, D); returns (B, L, D)."""
    return fn(x.unflatten(1, (frames, -1))).flatten(1, 2)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # x: (B, T, N, D); shift/scale: (B, T, D)
    return x * (1 + scale[:, :, None]) + shift[:, :, None]


def phase_weight(sigma: torch.Tensor, early: float, late: float, boundary: float, width: float) -> torch.Tensor:
    """Weight that moves from `late` (low noise) to `early` (high noise) around sigma = boundary."""
    if early == late:
        return torch.full_like(sigma, early)
    s = torch.sigmoid((sigma - boundary) / max(width, 1e-4))
    return late + (early - late) * s


class AudioWanTransformer(WanTransformer3DModel):
    """Wan2.1 DiT + frame-local audio cross-attention + per-token phase-aware cross-attention weights.

    Inputs follow Wan-Fun-InP: 16 noisy + 4 mask + 16 known-latent channels (`in_channels`), built
    for a window by models/window_input.py.
    `timestep` is (B,) or (B, T) per latent frame; the latter lets clean context frames run at t=0
    beside noisy frames in one pass.
    """

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 12,
        attention_head_dim: int = 128,
        in_channels: int = 36,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 8960,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = 1280,
        added_kv_proj_dim: int | None = 1536,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        text_len: int = 512,
        audio_dim: int = 768,
        audio_kv_bias: bool = False,
        phase_boundary: float = 0.5,
        phase_width: float = 0.1,
        audio_weight_early: float = 1.0,
        audio_weight_late: float = 1.0,
        text_weight_early: float = 1.0,
        text_weight_late: float = 1.0,
    ):
        super().__init__(
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim,
            rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        dim = num_attention_heads * attention_head_dim
        self.audio_proj = AudioProjection(audio_dim, dim)
        for block in self.blocks:
            attn = block.attn2
            attn.to_k_audio = nn.Linear(dim, dim, bias=audio_kv_bias)
            attn.to_v_audio = nn.Linear(dim, dim, bias=audio_kv_bias)
            attn.norm_k_audio = nn.RMSNorm(dim, eps=eps)
            # A new audio branch starts silent, as in EchoMimicV3 (zero-initialised K/V).
            nn.init.zeros_(attn.to_k_audio.weight)
            nn.init.zeros_(attn.to_v_audio.weight)

    # ---- static context -------------------------------------------------------------------
    def pad_text(self, text: torch.Tensor) -> torch.Tensor:
        """Zero-pad (or refuse) prompt embeddings to exactly `text_len` tokens, as Wan was trained."""
        n = self.config.text_len
        if text.shape[1] > n:
            raise ValueError(f"prompt has {text.shape[1]} tokens; this model takes at most {n}")
        if text.shape[1] < n:
            text = F.pad(text, (0, 0, 0, n - text.shape[1]))
        return text

    def prepare_context(self, text: torch.Tensor, image: torch.Tensor | None = None) -> CrossContext:
        """Project prompt embeddings (B, L<=text_len, text_dim) and image tokens once per session."""
        heads = self.config.num_attention_heads
        text = self.condition_embedder.text_embedder(self.pad_text(text))
        if image is not None:
            if self.condition_embedder.image_embedder is None:
                raise ValueError("this model has no image branch (image_dim is None)")
            image = self.condition_embedder.image_embedder(image).type_as(text)
        text_kv, image_kv = [], [] if image is not None else None
        for block in self.blocks:
            attn = block.attn2
            k = attn.norm_k(attn.to_k(text)).unflatten(2, (heads, -1))
            text_kv.append((k, attn.to_v(text).unflatten(2, (heads, -1))))
            if image is not None:
                k = attn.norm_added_k(attn.add_k_proj(image)).unflatten(2, (heads, -1))
                image_kv.append((k, attn.add_v_proj(image).unflatten(2, (heads, -1))))
        return CrossContext(text_kv, image_kv)

    # ---- forward ----------------------------------------------------------------------------
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        context: CrossContext,
        audio: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        audio_slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the flow velocity.

        hidden_states: (B, in_channels, T, H, W); timestep: (B,) or (B, T), in [0, 1000];
        context: from `prepare_context` (batch 1 or B); audio: (B, T, K, audio_dim) features per
        latent frame, or None for the null-audio branch (zeros through the projection, as the
        published pipelines do). audio_mask: (B or 1, tokens per frame) weights of the audio
        attention output in every block (EchoMimicV3's face mask), None for all ones.
        audio_slots: (B or 1, T, K) bool, False where a slot lies outside the audio: its token is
        an exact zero after the projection (EchoMimicV3 windows projected tokens), None for all True.
        """
        b, _, t, h, w = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        pt, ph, pw = t // p_t, h // p_h, w // p_w
        heads = self.config.num_attention_heads

        rotary_emb = self.rope(hidden_states)
        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()

        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(b, pt)
        if timestep.shape != (b, pt):
            raise ValueError(f"timestep must be (B,) or (B, {pt}), got {tuple(timestep.shape)}")
        # Modulation is computed per latent frame and broadcast over that frame's tokens: the same
        # result as diffusers' per-token (B, seq_len) timesteps (tests/test_dit.py, diffusers 0.42),
        # with one embedding per frame instead of one per token.
        ce = self.condition_embedder
        t_freq = ce.timesteps_proj(timestep.flatten().float()).unflatten(0, (b, pt))
        temb = ce.time_embedder(t_freq.to(ce.time_embedder.linear_1.weight.dtype)).type_as(x)  # (B, T, D)
        modulation = ce.time_proj(ce.act_fn(temb)).unflatten(2, (6, -1))  # (B, T, 6, D)

        sigma = timestep.float()[..., None, None] / 1000.0  # (B, T, 1, 1)
        cfg = self.config
        audio_w = phase_weight(sigma, cfg.audio_weight_early, cfg.audio_weight_late, cfg.phase_boundary, cfg.phase_width)
        text_w = phase_weight(sigma, cfg.text_weight_early, cfg.text_weight_late, cfg.phase_boundary, cfg.phase_width)

        if audio is None:
            audio = torch.zeros(b, pt, 1, cfg.audio_dim, dtype=x.dtype, device=x.device)
        if audio.shape[:2] != (b, pt):
            raise ValueError(f"audio must be (B={b}, T={pt}, K, {cfg.audio_dim}), got {tuple(audio.shape)}")
        audio_tokens = self.audio_proj(audio.to(x.dtype))
        if audio_slots is not None:
            if audio_slots.shape[1:] != audio.shape[1:3] or audio_slots.shape[0] not in (1, b):
                raise ValueError(f"audio_slots must be (B or 1, {pt}, {audio.shape[2]}), got {tuple(audio_slots.shape)}")
            audio_tokens = audio_tokens * audio_slots.to(audio_tokens.dtype)[..., None]
        audio_tokens = audio_tokens.flatten(0, 1)  # (B*T, K, D)
        if audio_mask is not None:
            if audio_mask.ndim != 2 or audio_mask.shape[1] != ph * pw or audio_mask.shape[0] not in (1, b):
                raise ValueError(f"audio_mask must be (B or 1, {ph * pw}), got {tuple(audio_mask.shape)}")
            audio_mask = audio_mask.to(x.dtype)[:, None, :, None]  # (B, 1, tokens per frame, 1)

        if context.text_kv[0][0].shape[0] == 1 and b > 1:
            context = context.repeat(b)

        for i, block in enumerate(self.blocks):
            x = self._block(block, i, x, context, audio_tokens, audio_mask, modulation, rotary_emb,
                            audio_w.to(x.dtype), text_w.to(x.dtype), pt, heads)

        shift, scale = (self.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).unbind(2)
        x = _per_frame(x, pt, lambda f: _modulate(self.norm_out(f.float()), shift, scale).type_as(f))
        x = self.proj_out(x)
        x = x.reshape(b, pt, ph, pw, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def _block(self, block, index, x, context, audio_tokens, audio_mask, modulation, rotary_emb, audio_w, text_w,
               frames, heads):
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = (
            block.scale_shift_table.unsqueeze(0) + modulation.float()
        ).unbind(2)  # each (B, T, D)
        norm_x = _per_frame(x, frames, lambda f: _modulate(block.norm1(f.float()), shift_msa, scale_msa).type_as(f))
        attn = block.attn1(norm_x, None, None, rotary_emb)
        x = _per_frame(x, frames, lambda f: f.float() + attn.unflatten(1, (frames, -1)) * gate_msa[:, :, None]).type_as(x)

        norm_x = block.norm2(x.float()).type_as(x)
        x = x + self._cross_attention(block.attn2, index, norm_x, context, audio_tokens, audio_mask, audio_w, text_w,
                                      frames, heads)

        norm_x = _per_frame(x, frames, lambda f: _modulate(block.norm3(f.float()), c_shift, c_scale).type_as(f))
        ff = block.ffn(norm_x).float()
        return _per_frame(x, frames, lambda f: f.float() + ff.unflatten(1, (frames, -1)) * c_gate[:, :, None]).type_as(x)

    def _cross_attention(self, attn, index, x, context, audio_tokens, audio_mask, audio_w, text_w, frames, heads):
        b, seq, dim = x.shape
        q = attn.norm_q(attn.to_q(x)).unflatten(2, (heads, -1))
        k, v = context.text_kv[index]
        out = (_attend(q, k, v).flatten(2).unflatten(1, (frames, -1)) * text_w).flatten(1, 2)
        if context.image_kv is not None:
            k, v = context.image_kv[index]
            out = out + _attend(q, k, v).flatten(2)
        # Frame-local audio: fold latent frames into the batch so frame t sees only its own tokens.
        q_frames = q.reshape(b * frames, seq // frames, heads, -1)
        k_audio = attn.norm_k_audio(attn.to_k_audio(audio_tokens)).unflatten(2, (heads, -1))
        v_audio = attn.to_v_audio(audio_tokens).unflatten(2, (heads, -1))
        audio_out = _attend(q_frames, k_audio, v_audio).reshape(b, frames, seq // frames, dim)
        if audio_mask is not None:
            audio_out = audio_out * audio_mask
        out = out + (audio_out * audio_w).flatten(1, 2)
        return attn.to_out[0](out)
