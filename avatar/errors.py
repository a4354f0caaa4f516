"""Errors the engine raises on bad input: each says what was wrong and what would be right."""


class AvatarError(Exception):
    """Base class of every error the engine raises on purpose."""


class ImageError(AvatarError, ValueError):
    """The reference image cannot be used (not an image, too large, unreadable)."""


class ImageTooLarge(ImageError):
    """The image is larger (bytes or pixels) than is accepted."""


class FaceError(ImageError):
    """The photo has no face the portrait profile can animate (none, a profile view, too small);
    `reason` is face_mesh's short code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # pickled whole: a session's process reports it to the server (avatar/remote.py)
        return type(self), (self.reason, str(self))


class AudioError(AvatarError, ValueError):
    """The audio cannot be used (unknown sample format, bad rate, unreadable file)."""


class ProfileError(AvatarError, ValueError):
    """Unknown profile name or a malformed profile file."""


class WeightsError(AvatarError, FileNotFoundError):
    """A weight file is missing, or its tensors do not match the model."""
