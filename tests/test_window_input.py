"""The window's DiT input is one definition: its layout, and the same tensors from the session and
from training's teacher solve for the same window."""

import copy
from dataclasses import replace

import torch

from avatar.session import Session
from models.profile_reader import read_profile
from models.training.data import clip_audio_tokens
from models.training.dit_stages import teacher_solve
from models.window_input import WindowInput


def test_clean_tokens_lead_at_timestep_zero_with_mask_one():
    known, x = torch.randn(2, 16, 3, 4, 4), torch.randn(2, 16, 2, 4, 4)
    window = WindowInput.clean_tokens(known, 2)
    hidden = window.hidden(x)
    assert hidden.shape == (2, 36, 5, 4, 4)
    assert torch.equal(hidden[:, :16], torch.cat([known, x], dim=2))
    assert torch.equal(hidden[:, 16:20], torch.cat([torch.ones(2, 4, 3, 4, 4), torch.zeros(2, 4, 2, 4, 4)], dim=2))
    assert torch.equal(hidden[:, 20:], torch.cat([known, torch.zeros_like(x)], dim=2))
    assert torch.equal(window.timesteps(torch.tensor([0.5, 0.25])), torch.tensor([[0, 0, 0, 500, 500], [0, 0, 0, 250, 250.]]))


def test_guidance_rows_repeat_the_batch_in_row_order():
    window = WindowInput.clean_tokens(torch.randn(2, 16, 1, 4, 4), 2)
    x = torch.randn(2, 16, 2, 4, 4)
    assert torch.equal(window.hidden(x, rows=3), window.hidden(x).repeat(3, 1, 1, 1, 1))
    assert torch.equal(window.timesteps(torch.tensor([0.5, 0.25]), rows=2)[:, 1], torch.tensor([500, 250, 500, 250.]))


def test_lip_sync_task_gives_the_new_latents_outside_the_mouth():
    known, given = torch.randn(1, 16, 1, 4, 4), torch.randn(1, 16, 2, 4, 4)
    mouth_out = torch.ones(1, 1, 1, 4, 4)
    mouth_out[..., 2:, 1:3] = 0
    hidden = WindowInput.clean_tokens(known, 2, given, mouth_out).hidden(torch.zeros_like(given))
    assert torch.equal(hidden[:, 16:20, 1:], mouth_out.expand(1, 4, 2, 4, 4))
    assert torch.equal(hidden[:, 20:, 1:], given * mouth_out)


def test_training_solves_a_window_with_the_tensors_the_session_samples_it_with(tiny_profile, face_image, speech_like):
    # float32, so both sides run the same arithmetic (training runs the teacher in float32 weights)
    dit = copy.deepcopy(tiny_profile.dit).float()
    # The session makes the step conditions and the audio keys/values once (per window, or per
    # session) and hands them to forward; training hands forward the raw tensors, from which it makes
    # them itself. Both ways, record what they are made from, and each forward's hidden states.
    hidden, timesteps, audio_made = [], [], []
    dit.register_forward_hook(lambda module, args, out: hidden.append(args[0]))
    make_steps, make_audio = dit.step_conditions, dit.audio_context
    dit.step_conditions = lambda timestep, shape: (timesteps.append(timestep), make_steps(timestep, shape))[1]
    dit.audio_context = lambda audio, *a: (audio_made.append(audio), make_audio(audio, *a))[1]
    profile = replace(tiny_profile, dit=dit, codec=copy.deepcopy(tiny_profile.codec).float(), dtype=torch.float32)
    cfg = read_profile("tiny-random")
    guidance = cfg.sampler.guidance.phases[0]
    assert profile.steps == 2 and guidance.min_sigma <= 0.75 and profile.shift == 3.0  # audio CFG at both steps

    pcm = speech_like(1.5)
    session = Session(profile, face_image, seed=3)
    session.push_audio(pcm, 16000)
    session.step(1)
    for made in (hidden, timesteps, audio_made):
        made.clear()
    session.step(1)  # window 1: reference + 2 context latents + 2 new
    session_made = hidden[:], timesteps[:], audio_made[:]
    c, n = profile.context_latents, profile.new_latents
    first_hidden = hidden[0]
    known, noise = first_hidden[:1, :16, :1 + c], first_hidden[:1, :16, 1 + c:]  # sigma 1: x = noise

    tokens = clip_audio_tokens(cfg, profile.audio_encoder, pcm, n - c, c + n)
    audio = torch.cat([torch.zeros_like(tokens[:1]), tokens])[None]  # the reference hears null audio
    assert torch.equal(audio_made[0], audio)  # training cuts a clip's audio as the session does

    for made in (hidden, timesteps, audio_made):
        made.clear()
    context = dit.prepare_context(torch.zeros(1, 1, cfg.dit.text_dim))
    trajectory = teacher_solve(dit, WindowInput.clean_tokens(known, n), audio, noise, steps=2,
                               audio_cfg=guidance.terms[0].scale, shift=3.0, ctx=context, bf16=False)
    assert len(hidden) == len(session_made[0]) == 2
    assert all(torch.equal(a, b) for a, b in zip(hidden + timesteps, session_made[0] + session_made[1]))
    # the session's rows (audio, null audio), made once for both steps; training's at each step
    rows = torch.cat(session_made[2])
    assert len(audio_made) == 2 and all(torch.equal(a, rows) for a in audio_made)
    assert torch.equal(trajectory[0.0], session._context[:, :, -n:])
    assert sorted(trajectory) == [0.0, 0.75, 1.0]


def test_inpaint_integrates_every_latent_and_gives_the_known_ones_only_through_the_condition():
    known, fill, x = torch.randn(1, 16, 3, 4, 4), torch.randn(1, 16, 2, 4, 4), torch.randn(1, 16, 5, 4, 4)
    window = WindowInput.inpaint(known, fill)
    hidden = window.hidden(x, rows=3)
    assert hidden.shape == (3, 36, 5, 4, 4) and window.frames == 5
    assert torch.equal(hidden[:, :16], x.expand(3, -1, -1, -1, -1))  # every latent is integrated
    assert torch.equal(hidden[:, 16:20], torch.cat([torch.ones(3, 4, 3, 4, 4), torch.zeros(3, 4, 2, 4, 4)], dim=2))
    assert torch.equal(hidden[:, 20:], torch.cat([known, fill], dim=2).expand(3, -1, -1, -1, -1))
    assert torch.equal(window.timesteps(0.5, rows=3), torch.full((3, 5), 500.0))  # one timestep a row
    out = torch.randn(3, 16, 5, 4, 4)
    assert torch.equal(window.integrated(out), out)
