"""The VAD-driven mouth closure on top of the DiT's motion (the portrait profile's `codec.silence_close_ms`).

The motion DiT opens the jaw in pauses before speech resumes and closes it late, so the rendered lips
never quite shut in silence. The session's own speech flags (the VAD's marks, else its energy gate,
one per video frame, with the window's look-ahead) drive a gain on the mouth channels: 1 in speech
(the DiT's motion as is), eased to 0 (the photo's shut mouth) over `close_ms` after the flags end,
and back up over the `LEAD_FRAMES` before they start again. The gain is the per-stream state carried
from frame to frame and window to window, so a stream made in pieces is the stream made at once.
"""
from __future__ import annotations

import numpy as np

from models.portrait.motion import INDEX

MOUTH = np.array([INDEX[name] for name in ("jaw_open", "lip_gap", "mouth_wide", "mouth_round",
                                           "upper_lip_raise", "lower_lip_drop", "lip_press")])
# Frames before a speech flag at which the mouth starts opening (its gain reaches 1 on the voice's
# first frame). A window's last frame sees 2 frames of look-ahead flags (70 ms), so this must stay <= 2.
LEAD_FRAMES = 2
FRAME_MS = 40.0


def close_in_silence(motion: np.ndarray, speech: np.ndarray, gain: float, close_ms: float) -> tuple[np.ndarray, float]:
    """(T, 15) motion and >= T + LEAD_FRAMES speech flags from its first frame (missing ones read as
    silence) -> (the motion with its mouth eased shut in silence, the gain after its last frame)."""
    flags = np.zeros(len(motion) + LEAD_FRAMES, bool)
    given = np.asarray(speech, bool)[:len(flags)]
    flags[:len(given)] = given
    rise, fall = 1.0 / (LEAD_FRAMES + 1), FRAME_MS / close_ms
    out = np.array(motion, np.float64, copy=True)
    for j in range(len(out)):
        speaking = flags[j:j + LEAD_FRAMES + 1].any()
        gain = min(1.0, gain + rise) if speaking else max(0.0, gain - fall)
        out[j, MOUTH] *= gain * gain * (3 - 2 * gain)   # smoothstep: no corner where it starts or stops
    return out, gain
