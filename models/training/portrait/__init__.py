"""Training-side pieces of the portrait profile: the judge and the speech targets."""
