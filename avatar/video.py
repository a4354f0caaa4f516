"""Writing frames and audio as H.264 + AAC with av: an mp4 file, or FLV pushed to an rtmp:// URL."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from models.audio_features import SAMPLE_RATE

STREAM_SCHEMES = ("rtmp://", "rtmps://")
AUDIO_CHUNK = 1024
NET_TIMEOUT_S = 2.0  # a live output whose server does not take its data for this long fails
FIFO_PACKETS = 500  # about 7 s of video and audio packets waiting for the network


def yuv420_frame(image: np.ndarray) -> av.VideoFrame:
    """An RGB image (H, W, 3 uint8) as the frame video encoders take: yuv420p, BT.601 limited range,
    as libswscale makes it. OpenCV converts 512x512 in ~0.1 ms; an encoder given RGB converts with
    libswscale itself, 0.5-1.5 ms a frame (aiortc's, on each call's share of the machine)."""
    if image.shape[0] % 2 or image.shape[1] % 2:  # 4:2:0 needs even sides: the encoder converts it
        return av.VideoFrame.from_ndarray(image, format="rgb24")
    return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), format="yuv420p")


def is_stream_url(target: str | Path) -> bool:
    return str(target).startswith(STREAM_SCHEMES)


class Mp4Writer:
    """Frames are encoded as they arrive; audio either as it arrives (`write_audio`) or all at
    once on close. A `target` starting rtmp:// or rtmps:// is an FLV stream (the server is
    connected to when the first packet goes out) with a key frame every 2 s, as live ingests ask."""

    def __init__(self, target: str | Path, fps: int, size: tuple[int, int], audio_rate: int | None = SAMPLE_RATE,
                 crf: int = 20):
        self.live = is_stream_url(target)
        self.path = str(target) if self.live else Path(target)
        if self.live:
            # Through FFmpeg's fifo muxer: the connection and every network write happen on its own
            # thread (av holds the GIL while it opens a URL: a server that never answered would stop
            # the whole process), a mux waits only when its queue is full (without the GIL), and a
            # network wait longer than NET_TIMEOUT_S fails; the failure surfaces on a later mux.
            self.container = av.open(self.path, mode="w", format="fifo", container_options={
                "fifo_format": "flv", "queue_size": str(FIFO_PACKETS),
                "format_opts": f"rw_timeout={int(NET_TIMEOUT_S * 1e6)}"})
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.container = av.open(str(self.path), mode="w")
        self.fps = fps
        self.video = self.container.add_stream("libx264", rate=fps)
        self.video.height, self.video.width = size
        self.video.pix_fmt = "yuv420p"
        self.video.options = {"crf": str(crf), "preset": "veryfast"} | ({"g": str(2 * fps)} if self.live else {})
        self.audio = None
        if audio_rate:
            # every stream must exist before the first packet is muxed
            self.audio = self.container.add_stream("aac", rate=audio_rate, layout="mono")
        if self.live:  # FLV carries the codecs' headers once, up front (fifo does not ask for that itself)
            for stream in (self.video, self.audio):
                if stream is not None:
                    stream.codec_context.flags |= av.codec.context.Flags.global_header
        self.frames = 0
        self.audio_samples = 0  # written with write_audio

    def write(self, image: np.ndarray, index: int | None = None) -> None:
        frame = yuv420_frame(image)
        frame.pts = self.frames if index is None else index  # in frames: the codec's time base is 1/fps
        self.container.mux(self.video.encode(frame))
        self.frames += 1

    def write_audio(self, pcm: np.ndarray, start: int | None = None) -> None:
        """Mono float32 at the audio stream's rate; `start` (its first sample's pts, in samples) must
        follow on from the last call's end: av's AAC encoder takes contiguous audio only."""
        if not len(pcm):
            return
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, np.float32)[None], format="flt", layout="mono")
        frame.sample_rate = self.audio.rate
        frame.pts = self.audio_samples if start is None else start
        self.container.mux(self.audio.encode(frame))
        self.audio_samples = frame.pts + len(pcm)

    def close(self, audio: np.ndarray | None = None) -> None:
        self.container.mux(self.video.encode(None))
        if self.audio is not None and audio is not None and len(audio):
            pcm = np.asarray(audio, np.float32)
            for start in range(0, len(pcm), AUDIO_CHUNK):
                self.write_audio(pcm[start:start + AUDIO_CHUNK], start)
        if self.audio is not None and self.audio_samples:
            self.container.mux(self.audio.encode(None))
        self.container.close()
