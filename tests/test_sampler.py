import pytest
import torch

from models.sampler import GuidancePhase, GuidancePlan, GuidanceTerm, flow_sigmas, forward_count, guided_velocity, sample


def test_sigmas_run_from_one_to_zero_and_shift_moves_them_up():
    plain, shifted = flow_sigmas(4, 1.0), flow_sigmas(4, 5.0)
    assert plain[0] == 1 and plain[-1] == 0 and len(plain) == 5
    assert torch.all(plain[1:] < plain[:-1])
    assert torch.all(shifted[1:-1] > plain[1:-1])
    with pytest.raises(ValueError):
        flow_sigmas(0)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_euler_recovers_the_target_of_an_exact_velocity_field(steps):
    x0 = torch.randn(1, 4, 2, 3, 3)
    noise = torch.randn_like(x0)

    def denoise(x, sigma, variants):
        return [noise - x0 for _ in variants]  # the straight flow's velocity is constant

    out = sample(denoise, noise, flow_sigmas(steps, 3.0), GuidancePlan())
    torch.testing.assert_close(out, x0)


def test_guidance_plan_by_phase_and_cost():
    plan = GuidancePlan((GuidancePhase(0.6, (GuidanceTerm("audio", 2.0), GuidanceTerm("negative", 1.5))),
                         GuidancePhase(0.0)))
    assert [t.condition for t in plan.terms_at(0.9)] == ["audio", "negative"]
    assert plan.terms_at(0.3) == ()
    sigmas = flow_sigmas(3, 1.0)  # 1, 2/3, 1/3
    assert forward_count(sigmas, plan) == 3 + 3 + 1 + 1 - 1  # two guided steps (3 rows), one plain
    assert forward_count(sigmas, plan.without("audio", "negative")) == 3


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
