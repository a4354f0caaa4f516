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

import torch
import torch.nn.functional as F
from torch import nn

from diffusers.configuration_utils import register_to_config
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel

from .dit_parts import (AudioContext, CrossContext, StepConditions, _attend, _modulate, _per_frame,  # noqa: F401
                        _rotate, phase_weight)


class AudioProjection(nn.Module):
    """Per-token projection of audio features into the DiT width (EchoMimicV3 preview's `audio2token`)."""

    def __init__(self, audio_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(audio_dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(audio))


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

    # ---- what repeats between forwards -------------------------------------------------------
    def step_conditions(self, timestep: torch.Tensor, shape: torch.Size) -> StepConditions:
        """What a forward derives from its timesteps, (B,) or (B, T) in [0, 1000], and the hidden
        states' `shape` (B, C, T, H, W) alone. A sampler's steps repeat from window to window, so a
        live session computes these once per step kind (`forward` takes them for `timestep`)."""
        b, pt = shape[0], shape[2] // self.config.patch_size[0]
        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(b, pt)
        if timestep.shape != (b, pt):
            raise ValueError(f"timestep must be (B,) or (B, {pt}), got {tuple(timestep.shape)}")
        dtype = self.patch_embedding.weight.dtype  # the blocks' hidden states
        # Modulation is computed per latent frame and broadcast over that frame's tokens: the same
        # result as diffusers' per-token (B, seq_len) timesteps (tests/test_dit.py, diffusers 0.42),
        # with one embedding per frame instead of one per token.
        ce = self.condition_embedder
        t_freq = ce.timesteps_proj(timestep.flatten().float()).unflatten(0, (b, pt))
        temb = ce.time_embedder(t_freq.to(ce.time_embedder.linear_1.weight.dtype)).to(dtype)  # (B, T, D)
        modulation = ce.time_proj(ce.act_fn(temb)).unflatten(2, (6, -1)).float()  # (B, T, 6, D)
        blocks = []
        for block in self.blocks:
            shift, scale, gate, c_shift, c_scale, c_gate = (block.scale_shift_table.unsqueeze(0) + modulation).unbind(2)
            blocks.append((shift, 1 + scale, gate, c_shift, 1 + c_scale, c_gate))
        shift, scale = (self.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).unbind(2)

        sigma = timestep.float()[..., None, None] / 1000.0  # (B, T, 1, 1)
        cfg = self.config

        def weight(early: float, late: float) -> torch.Tensor | None:  # None: 1 everywhere
            if early == late == 1.0:
                return None
            return phase_weight(sigma, early, late, cfg.phase_boundary, cfg.phase_width).to(dtype)

        freqs_cos, freqs_sin = self.rope(torch.empty(shape, device="meta"))
        cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]  # one per pair of channels, as diffusers reads them
        rotary = torch.stack([cos, cos], -1).flatten(-2), torch.stack([-sin, sin], -1).flatten(-2)
        return StepConditions(b, pt, blocks, shift, 1 + scale, weight(cfg.audio_weight_early, cfg.audio_weight_late),
                              weight(cfg.text_weight_early, cfg.text_weight_late), rotary)

    def audio_context(self, audio: torch.Tensor | None, shape: torch.Size, audio_slots: torch.Tensor | None = None,
                      audio_mask: torch.Tensor | None = None) -> AudioContext:
        """The audio's keys and values in every block, for hidden states of `shape` (the other
        arguments as `forward`'s). Every sampling step of a window has the same, so a live session
        computes them once per window (`forward` takes them for `audio`)."""
        cfg = self.config
        b, pt = shape[0], shape[2] // cfg.patch_size[0]
        tokens_per_frame = shape[3] // cfg.patch_size[1] * (shape[4] // cfg.patch_size[2])
        weight = self.patch_embedding.weight
        if audio is None:
            audio = torch.zeros(b, pt, 1, cfg.audio_dim, dtype=weight.dtype, device=weight.device)
        if audio.shape[:2] != (b, pt):
            raise ValueError(f"audio must be (B={b}, T={pt}, K, {cfg.audio_dim}), got {tuple(audio.shape)}")
        tokens = self.audio_proj(audio.to(weight.dtype))
        if audio_slots is not None:
            if audio_slots.shape[1:] != audio.shape[1:3] or audio_slots.shape[0] not in (1, b):
                raise ValueError(f"audio_slots must be (B or 1, {pt}, {audio.shape[2]}), got {tuple(audio_slots.shape)}")
            tokens = tokens * audio_slots.to(tokens.dtype)[..., None]
        tokens = tokens.flatten(0, 1)  # (B*T, K, D)
        if audio_mask is not None:
            if audio_mask.ndim != 2 or audio_mask.shape[1] != tokens_per_frame or audio_mask.shape[0] not in (1, b):
                raise ValueError(f"audio_mask must be (B or 1, {tokens_per_frame}), got {tuple(audio_mask.shape)}")
            audio_mask = audio_mask.to(weight.dtype)[:, None, :, None]  # (B, 1, tokens per frame, 1)
        heads = cfg.num_attention_heads
        kv = [(block.attn2.norm_k_audio(block.attn2.to_k_audio(tokens)).unflatten(2, (heads, -1)),
               block.attn2.to_v_audio(tokens).unflatten(2, (heads, -1))) for block in self.blocks]
        return AudioContext(b, kv, audio_mask)

    # ---- forward ----------------------------------------------------------------------------
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor | StepConditions,
        context: CrossContext,
        audio: torch.Tensor | AudioContext | None = None,
        audio_mask: torch.Tensor | None = None,
        audio_slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the flow velocity.

        hidden_states: (B, in_channels, T, H, W); timestep: (B,) or (B, T), in [0, 1000], or
        `step_conditions` of such; context: from `prepare_context` (batch 1 or B); audio: (B, T, K,
        audio_dim) features per latent frame, None for the null-audio branch (zeros through the
        projection, as the published pipelines do), or `audio_context` of such (which then holds
        the mask and slots). audio_mask: (B or 1, tokens per frame) weights of the audio
        attention output in every block (EchoMimicV3's face mask), None for all ones.
        audio_slots: (B or 1, T, K) bool, False where a slot lies outside the audio: its token is
        an exact zero after the projection (EchoMimicV3 windows projected tokens), None for all True.
        """
        b, _, t, h, w = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        pt, ph, pw = t // p_t, h // p_h, w // p_w
        steps = timestep if isinstance(timestep, StepConditions) else self.step_conditions(timestep, hidden_states.shape)
        if not isinstance(audio, AudioContext):
            audio = self.audio_context(audio, hidden_states.shape, audio_slots, audio_mask)
        if (steps.batch, steps.frames, audio.batch) != (b, pt, b):
            raise ValueError(f"step conditions / audio context made for other hidden states than {tuple(hidden_states.shape)}")
        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()
        if context.text_kv[0][0].shape[0] == 1 and b > 1:
            context = context.repeat(b)

        for i, block in enumerate(self.blocks):
            x = self._block(block, i, x, context, audio, steps)

        x = _per_frame(x, pt, lambda f: _modulate(self.norm_out(f.float()), steps.out_shift, steps.out_scale).type_as(f))
        x = self.proj_out(x)
        x = x.reshape(b, pt, ph, pw, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def _block(self, block, index: int, x: torch.Tensor, context: CrossContext, audio: AudioContext,
               steps: StepConditions) -> torch.Tensor:
        frames = steps.frames
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = steps.blocks[index]  # each (B, T, D)
        norm_x = _per_frame(x, frames, lambda f: _modulate(block.norm1(f.float()), shift_msa, scale_msa).type_as(f))
        attn = self._self_attention(block.attn1, norm_x, steps.rotary)
        x = _per_frame(x, frames, lambda f: f.float() + attn.unflatten(1, (frames, -1)) * gate_msa[:, :, None]).type_as(x)

        norm_x = block.norm2(x.float()).type_as(x)
        x = x + self._cross_attention(block.attn2, index, norm_x, context, audio, steps)

        norm_x = _per_frame(x, frames, lambda f: _modulate(block.norm3(f.float()), c_shift, c_scale).type_as(f))
        ff = block.ffn(norm_x).float()
        return _per_frame(x, frames, lambda f: f.float() + ff.unflatten(1, (frames, -1)) * c_gate[:, :, None]).type_as(x)

    @staticmethod
    def _self_attention(attn, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        # diffusers' WanAttnProcessor (self-attention, no dropout) with its arithmetic, fewer calls
        heads = attn.heads
        q, k = _rotate(torch.stack([attn.norm_q(attn.to_q(x)), attn.norm_k(attn.to_k(x))]).unflatten(3, (heads, -1)),
                       rotary)
        out = _attend(q, k, attn.to_v(x).unflatten(2, (heads, -1))).flatten(2, 3).type_as(q)
        return attn.to_out[0](out)

    @staticmethod
    def _cross_attention(attn, index: int, x: torch.Tensor, context: CrossContext, audio: AudioContext,
                         steps: StepConditions) -> torch.Tensor:
        b, seq, dim = x.shape
        frames = steps.frames
        q = attn.norm_q(attn.to_q(x)).unflatten(2, (attn.heads, -1))
        k, v = context.text_kv[index]
        # one text token (a profile without a text encoder): its softmax weight is exactly 1
        out = (v.expand(b, seq, -1, -1) if k.shape[1] == 1 else _attend(q, k, v)).flatten(2)
        if steps.text_w is not None:
            out = (out.unflatten(1, (frames, -1)) * steps.text_w).flatten(1, 2)
        if context.image_kv is not None:
            k, v = context.image_kv[index]
            out = out + _attend(q, k, v).flatten(2)
        # Frame-local audio: fold latent frames into the batch so frame t sees only its own tokens.
        k, v = audio.kv[index]
        audio_out = _attend(q.reshape(b * frames, seq // frames, attn.heads, -1), k, v).reshape(b, frames, seq // frames, dim)
        if audio.mask is not None:
            audio_out = audio_out * audio.mask
        if steps.audio_w is not None:
            audio_out = audio_out * steps.audio_w
        return attn.to_out[0](out + audio_out.flatten(1, 2))
