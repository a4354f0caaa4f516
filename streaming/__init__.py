"""Real-time transport: WebRTC calls in, VAD-chunked audio into the engine, paced video + voice out.

Imports run streaming -> avatar -> models, never back.
"""
