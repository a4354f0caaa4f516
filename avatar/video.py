"""Writing frames and audio to an H.264 mp4 with av."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from models.audio_features import SAMPLE_RATE


class Mp4Writer:
    """Frames are encoded as they arrive; the audio track is written on close."""

    def __init__(self, path: str | Path, fps: int, size: tuple[int, int], audio_rate: int | None = SAMPLE_RATE,
                 crf: int = 20):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), mode="w")
        self.fps = fps
        self.video = self.container.add_stream("libx264", rate=fps)
        self.video.height, self.video.width = size
        self.video.pix_fmt = "yuv420p"
        self.video.options = {"crf": str(crf), "preset": "veryfast"}
        self.audio = None
        if audio_rate:
            # every stream must exist before the first packet is muxed
            self.audio = self.container.add_stream("aac", rate=audio_rate, layout="mono")
        self.frames = 0

    def write(self, image: np.ndarray, index: int | None = None) -> None:
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.frames if index is None else index  # in frames: the codec's time base is 1/fps
        self.container.mux(self.video.encode(frame))
        self.frames += 1

    def close(self, audio: np.ndarray | None = None) -> None:
        self.container.mux(self.video.encode(None))
        stream = self.audio
        if stream is not None and audio is not None and len(audio):
            sample_rate = stream.rate
            chunk = 1024
            pcm = np.asarray(audio, np.float32)
            for start in range(0, len(pcm), chunk):
                piece = pcm[start:start + chunk][None]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece), format="flt", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = start
                self.container.mux(stream.encode(frame))
            self.container.mux(stream.encode(None))
        self.container.close()
