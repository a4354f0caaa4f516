import pytest
import torch

from models.sampler import GuidancePhase, GuidancePlan, GuidanceTerm, flow_sigmas, forward_count, guided_velocity, sample


def test_unshifted_sigmas_are_evenly_spaced_from_one_to_zero():
    assert flow_sigmas(4, 1.0).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_shift_warps_each_sigma_as_wan_does():
    # shift * s / (1 + (shift - 1) * s): 0.5 -> 2.5 / 3 at shift 5; the ends stay put
    expected = torch.tensor([1.0, 3.75 / 4.0, 2.5 / 3.0, 1.25 / 2.0, 0.0])
    torch.testing.assert_close(flow_sigmas(4, 5.0), expected, rtol=0, atol=1e-7)


def test_a_sampler_needs_at_least_one_step():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        flow_sigmas(0)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_euler_recovers_the_target_of_an_exact_velocity_field(steps):
    x0 = torch.randn(1, 4, 2, 3, 3)
    noise = torch.randn_like(x0)

    def denoise(x, sigma, variants):
        return [noise - x0 for _ in variants]  # the straight flow's velocity is constant

    out = sample(denoise, noise, flow_sigmas(steps, 3.0), GuidancePlan())
    torch.testing.assert_close(out, x0)


PHASED = GuidancePlan((GuidancePhase(0.6, (GuidanceTerm("audio", 2.0), GuidanceTerm("negative", 1.5))),
                       GuidancePhase(0.0)))


def test_guidance_terms_come_from_the_first_phase_whose_min_sigma_is_reached():
    assert [t.condition for t in PHASED.terms_at(0.9)] == ["audio", "negative"]
    assert [t.condition for t in PHASED.terms_at(0.6)] == ["audio", "negative"]
    assert PHASED.terms_at(0.3) == ()


def test_forward_count_is_one_row_per_step_plus_one_per_guidance_term():
    sigmas = flow_sigmas(3, 1.0)  # steps at 1 and 2/3 are guided (3 rows each), 1/3 is plain
    assert forward_count(sigmas, PHASED) == 3 + 3 + 1
    assert forward_count(sigmas, PHASED.without("audio", "negative")) == 3


def test_a_guidance_term_must_drop_a_known_condition():
    with pytest.raises(ValueError, match="unknown guidance condition 'colour'"):
        GuidanceTerm("colour", 2.0)


def test_guided_velocity_is_classifier_free_guidance():
    plan = GuidancePlan((GuidancePhase(0.0, (GuidanceTerm("audio", 3.0),)),))
    cond, uncond = torch.tensor([2.0]), torch.tensor([1.0])
    asked = []

    def denoise(x, sigma, variants):
        asked.append(variants)
        return [cond if v == "cond" else uncond for v in variants]

    v = guided_velocity(denoise, torch.zeros(1), 0.5, plan)
    assert asked == [("cond", "audio")]
    torch.testing.assert_close(v, uncond + 3.0 * (cond - uncond))


def official_plan():
    from models.profile_reader import read_profile

    s = read_profile("echomimic-v3").sampler
    return s.guidance, {"steps": s.steps, "shift": s.shift, "sigmas": s.sigmas}


def test_the_official_sigmas_are_diffusers_flow_match_euler_with_shift_5():
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0, use_dynamic_shifting=False)
    scheduler.set_timesteps(25)
    ours = flow_sigmas(25, 5.0, "flow-match-euler")
    assert len(ours) == 26 and ours[-1] == 0
    torch.testing.assert_close(ours, scheduler.sigmas, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours[:-1] * 1000, scheduler.timesteps, rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="unknown sigma schedule"):
        flow_sigmas(4, 5.0, "karras")


def test_the_official_plan_costs_25_steps_of_3_rows_at_the_official_scales():
    import math

    plan, s = official_plan()
    sigmas = flow_sigmas(s["steps"], s["shift"], s["sigmas"])
    assert forward_count(sigmas, plan) == 25 * 3
    # infer_preview.py: guidance_scale 4, audio_guidance_scale 2.9, use_dynamic_cfg / use_dynamic_acfg
    n = 25
    for i, sigma in enumerate(sigmas[:-1].tolist()):
        gs = 4.0 / 2 + (4.0 / 2) * ((1 - math.cos(math.pi * ((n - i) / n) ** 5.0)) / 2)
        ags = 2.9 / 2 + (2.9 / 2) * ((1 - math.cos(math.pi * ((n - i) / n) ** 5.0)) / 2)
        audio, negative = plan.terms_at(sigma)
        assert plan.scale(audio, i, n) == pytest.approx(ags, abs=1e-12)
        assert plan.scale(negative, i, n) == pytest.approx(gs, abs=1e-12)
    assert plan.scale(negative, 0, n) == 4.0 and plan.scale(negative, 24, n) == pytest.approx(2.0, abs=1e-6)


def test_the_official_rows_combine_as_u_plus_gs_d_minus_u_plus_ags_c_minus_d():
    plan, _ = official_plan()
    c, d, u = torch.tensor([3.0]), torch.tensor([2.0]), torch.tensor([-1.0])
    asked = []

    def denoise(x, sigma, variants):
        asked.append(variants)
        return [{"cond": c, "audio": d, "audio+negative": u}[v] for v in variants]

    step, steps = 7, 25
    v = guided_velocity(denoise, torch.zeros(1), 0.5, plan, step, steps)
    # the official rows: [negative prompt + zero audio, prompt + zero audio, prompt + audio]
    assert asked == [("cond", "audio", "audio+negative")]
    from models.sampler import cosine_scale, dropped

    gs, ags = cosine_scale(4.0, step, steps), cosine_scale(2.9, step, steps)
    torch.testing.assert_close(v, u + gs * (d - u) + ags * (c - d))
    assert dropped("audio+negative") == {"audio", "negative"} and dropped("cond") == set()
    # idle windows drop the audio term: prompt vs negative prompt, both with the null audio
    idle = plan.without("audio")
    assert idle.rows_at(0.5) == ("cond", "negative") and forward_count(flow_sigmas(25, 5.0), idle) == 50


def test_the_state_stays_float32_while_the_network_runs_in_bfloat16():
    noise, sigmas = torch.randn(1, 4, 2, 3, 3), flow_sigmas(4, 3.0)
    seen = []

    def denoise(x, sigma, variants):  # a bf16 network: it rounds its input and its output
        seen.append(x.dtype)
        return [x.to(torch.bfloat16) * 0.5 for _ in variants]

    out = sample(denoise, noise, sigmas, GuidancePlan())
    expected = noise.clone()
    for sigma, sigma_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        expected = expected + (sigma_next - sigma) * (expected.to(torch.bfloat16) * 0.5).float()
    assert out.dtype == torch.float32 and seen == [torch.float32] * 4
    assert torch.equal(out, expected)
