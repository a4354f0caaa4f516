export interface ConnectOptions {
  /** ws(s)://host:port/ws, or http(s)://host:port (the /ws path is added); default: this page's server. */
  url?: string;
  /** The voice to send: a MediaStream with an audio track, or 'mic' to ask for the microphone. */
  audio?: MediaStream | 'mic';
  /** Where the avatar plays (video and its delayed voice, kept in sync). */
  video: HTMLVideoElement;
  /** An uploaded reference image (the server limits its size and dimensions). */
  image?: File | Blob | string;
  /** A server-side avatar id (see GET /avatars.json). Ignored when image is given. */
  avatar?: string;
  prompt?: string;
  /** The server's shared secret, if it has one. */
  token?: string;
  /** STUN/TURN servers for this call; default: those the server names in its "ready" message. */
  iceServers?: RTCIceServer[];
  /** Also push the call (avatar + voice, H.264 + AAC) to this rtmp:// URL; the server must allow it (--rtmp-allow). */
  rtmp?: string;
  /** Let WHEP players watch this call (avatar + your re-timed voice) at the answer's `watch` path; off by default. */
  watch?: boolean;
}

export interface VadEventDetail {
  /** Seconds on the call's media clock. */
  t: number;
  /** Seconds since the first audio the server received from this caller. */
  inputT: number;
  /** Index of the first frame showing this moment. */
  frame: number;
  /** Seconds until that frame is sent. */
  showsInS: number;
}

/** speechend: where the utterance stops playing, for truncating a transcript. */
export interface SpeechEndDetail extends VadEventDetail {
  /** Call time the utterance plays up to: t, or where an interrupt cut it. */
  playedTo: number;
  /** The same on the caller's clock (seconds since its first audio). */
  playedToInputT: number;
  /** Whether an interrupt cut the utterance short (at playedTo). */
  cut: boolean;
}

export interface LatencyTerms {
  window_s: number;
  lookahead_s: number;
  compute_allowance_s: number;
  output_delay_s: number;
  compute_last_s: number | null;
  compute_p95_s: number | null;
  slack_min_s: number | null;
  vad_onset_s: number | null;
  /** Round-trip time from the caller's RTCP reports (null until the first one). */
  network_rtt_s: number | null;
}

export interface ServerStats {
  type: 'stats';
  fps: number;
  frames_sent: number;
  /** Slots that showed the previous frame again because their own was late (new frames = sent - repeated). */
  frames_repeated: number;
  /** Frames pushed out of a full buffer (a late frame is counted in frames_repeated only). */
  frames_dropped: number;
  queued_frames: number;
  speaking: boolean;
  input_offset_s: number | null;
  input_gaps: number;
  /** Input audio frames dropped unread: a backlog the server could not keep up with (half a second is kept). */
  input_dropped: number;
  latency: LatencyTerms;
  engine: {
    windows: number; idle_windows: number; fewer_steps: number; catch_ups: number; late_windows: number;
    /** Frames handed over after their due time (each shown as a repeat), and those by their window's likeliest cause. */
    late_frames: number;
    late_causes: Record<'late_start' | 'gc' | 'full_steps' | 'after_idle' | 'contention' | 'compute', number>;
  };
}

/** The server's answer to the offer. */
export interface AnswerMessage {
  type: 'answer';
  sdp: string;
  /** The fixed output delay: the avatar (and your voice with it) plays this many seconds after you speak. */
  delay_s: number;
  fps: number;
  /** [height, width] of the avatar's video, in pixels. */
  resolution: [number, number];
  /** Where the call goes besides this peer: 'rtmp' (a push), 'record' (an mp4 on the server). */
  outputs: Array<'rtmp' | 'record'>;
  /** With the `watch` option: the WHEP path (/whep/{id}) where players may watch the call. Anyone with it
   * (and the server's token, if it has one) can watch and hear your re-timed voice: share it only on purpose. */
  watch?: string;
}

export declare class AvatarError extends Error {
  code: string;
  /** A finer code within `code` when the server gives one: for a photo without a usable face, why (no_face, profile, tiny_face). */
  reason?: string;
  constructor(code: string, message: string, reason?: string);
}

export interface AvatarCallEvents {
  ready: {
    call: string; avatars: string[]; profile: string; fps: number; limits: Record<string, number>;
    /** The server's STUN/TURN servers (with TURN credentials), used for the call unless connect() is given others. */
    ice_servers: RTCIceServer[];
  };
  speechstart: VadEventDetail;
  speechend: SpeechEndDetail;
  stats: ServerStats;
  /** The caller's voice plays up to t (call time; input_t: the caller's clock); cut: speech was dropped. */
  interrupted: { t: number; input_t: number; cut: boolean };
  /** A new avatar took over from this frame on. */
  avatar: { frame: number };
  /** 'catch-up': fell behind and jumped over skipped_frames; 'late_frames': many repeats since the last stats. */
  degraded: { reason: 'catch-up' | 'late_frames'; behind_s: number; skipped_frames?: number; repeated_share?: number };
  /** An output (an RTMP push, the recording) stopped; the call goes on without it. */
  output: { output: 'rtmp' | 'record'; ok: false; reason: string };
  error: AvatarError;
  close: { reason: string };
}

export declare class AvatarCall extends EventTarget {
  readonly ws: WebSocket;
  readonly pc: RTCPeerConnection;
  readonly video: HTMLVideoElement;
  /** The server's "ready" message (also the detail of the sticky 'ready' event). */
  info: AvatarCallEvents['ready'] | null;
  /** The server's answer (set before connect() resolves). */
  answer: AnswerMessage | null;
  lastStats: ServerStats | null;
  closed: boolean;
  /** 'ready' is sticky: a listener added after the server's "ready" message still gets it. */
  on<K extends keyof AvatarCallEvents>(type: K, listener: (detail: AvatarCallEvents[K], event: CustomEvent) => void): this;
  /** Remove a listener given to on(). */
  off<K extends keyof AvatarCallEvents>(type: K, listener: (detail: AvatarCallEvents[K], event: CustomEvent) => void): this;
  interrupt(): void;
  setPrompt(text: string): void;
  setAvatar(choice: { avatar?: string; image?: File | Blob | string }): Promise<void>;
  getStats(): Promise<{ server: ServerStats | null; video: { framesPerSecond: number | null; framesDecoded: number | null; framesDropped: number | null; jitterBufferDelayS: number | null } | null }>;
  close(reason?: string): void;
}

export declare function signalingUrl(url?: string, token?: string): string;
export declare function connect(options: ConnectOptions): Promise<AvatarCall>;
