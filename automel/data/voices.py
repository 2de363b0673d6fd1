"""Source–filter voices for the synthetic corpus: who speaks, what they say, and through which channel.

Acoustics in brief. Voiced speech is a glottal pulse train (one pulse per vocal-fold cycle, its spectrum
falling by the speaker's *spectral tilt*) plus aspiration noise (breathiness), shaped by the vocal tract,
whose resonances (*formants*) depend on the phone being said and scale with the speaker's vocal-tract
length: a shorter tract gives higher formants. Fricatives and stop bursts are noise shaped by a band
that bypasses most of the tract. Everything here is synthesised with numpy alone: the time-varying tract
filter is applied frame by frame in the frequency domain (Hann-windowed overlap-add, zero-padded so the
resonances' ringing does not wrap around), which is fast and needs no IIR filter library.

Speaker identity lives in the voice (:class:`Voice`); the phone inventory is shared by every speaker, so
the content tells nothing about who speaks. Each utterance also gets its own recording channel (EQ,
noise, gain), which is what makes telling the voices apart from long-term spectra alone hard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automel.data.frontend import SAMPLE_RATE

# --- Difficulty knobs ---------------------------------------------------------------------------------
# Calibrated with ``bench/synth_difficulty.py`` on the default corpus (64 speakers x 40 utterances,
# seed 0): logistic regression on per-utterance mean+std log-mel must stay below 70% test accuracy (a
# long-term-spectrum baseline must not solve it) while HW4's Simple transformer reaches 40-80% in 2,000
# steps (the voices are learnable, and better models have room to show). Result: 58% and 49-62% (three
# training seeds). What calibration found:
# - Speaker spread moves both scores together: 0.7 gives 49% / 30-40%, 1.0 gives 70% / 55-67%.
# - Noise costs both; SNR mostly near the clean end of 5-30 dB keeps the Simple model learnable.
# - The recording level matters most to the un-normalised Simple model: at -26..-20 dBFS the log-mel
#   offset (~15, as in HW4) often leaves it on a chance-level plateau for hundreds of steps (35-62%
#   across seeds); 15 dB quieter it trains reliably. A wide level range (18 dB) costs it ~20 points.
# - Channel EQ hides the long-term spectrum from logistic regression (whose per-bin std features are
#   gain- and EQ-invariant anyway), so it keeps a real channel but is not the main lever.
SPEAKER_SPREAD = 0.85  # scales every speaker parameter's (log) range around its centre; 1 = natural ranges
FORMANT_IDIOSYNCRASY = 0.05  # per-speaker log-std of each formant beyond vocal-tract-length scaling
ACCENT = 0.04  # per-speaker, per-phone log-std of the formant targets ("accent")
SESSION_F0_ST = 1.0  # per-utterance std of the speaker's mean pitch (semitones)
SESSION_TILT_DB = 1.5  # per-utterance std of the spectral tilt (vocal effort), dB/octave
CHANNEL_TILT_DB_PER_OCT = 1.5  # std of the channel's overall spectral slope
CHANNEL_PEAKS = 2  # peaking filters per channel
CHANNEL_PEAK_DB = 6.0  # std of each peaking filter's gain
BANDLIMIT_PROB = 0.3  # share of band-limited (telephone-like, 3.4-7.5 kHz low-pass) channels
SNR_DB = (5.0, 30.0)  # additive noise: SNR range (dB)...
SNR_SKEW = 2.0  # ...drawn as hi - (hi - lo) * u**SNR_SKEW: 1 = uniform, larger = mostly clean recordings
NOISE_COLOUR_DB = (-9.0, -3.0)  # noise spectral slope range, dB/octave (-3 pink, -6 brown)
LEVEL_DBFS = (-41.0, -35.0)  # recording level (RMS), uniform in dB
DURATION_S = (2.0, 4.0)  # utterance length, uniform

SR = SAMPLE_RATE
HOP = 256  # synthesis frame hop (16 ms); frames are 2*HOP long, Hann-windowed, so they sum to one
NFFT = 4 * HOP  # zero-padded FFT: room for the filter's ringing on both sides of the frame
FREQS = np.fft.rfftfreq(NFFT, 1 / SR)


@dataclass(frozen=True)
class Phone:
    """One entry of the shared inventory; formants are an adult male tract's (Hz), loci for consonants."""

    name: str
    formants: tuple[float, float, float]
    dur: float  # mean duration at speaking rate 1 (s)
    voice: float  # glottal source level (0: voiceless)
    asp: float = 0.0  # aspiration (h-like noise that goes through the tract)
    fric: float = 0.0  # frication level (a noise band that bypasses the tract)
    band: tuple[float, float] = (4000.0, 4000.0)  # frication centre and bandwidth (Hz)
    nasal_zero: float = 0.0  # nasal antiresonance (Hz); 0 for oral phones
    stop: bool = False  # a closure (silence or voice bar), a burst, and aspiration if voiceless


_LAB, _ALV, _PAL, _VEL = (300, 900, 2200), (300, 1700, 2600), (300, 1900, 2500), (300, 2100, 2500)
VOWELS = tuple(
    Phone(n, f, d, 1.0)
    for n, f, d in [
        ("i", (270, 2290, 3010), 0.10), ("I", (390, 1990, 2550), 0.08), ("E", (530, 1840, 2480), 0.09),
        ("ae", (660, 1720, 2410), 0.13), ("a", (730, 1090, 2440), 0.13), ("O", (570, 840, 2410), 0.12),
        ("U", (440, 1020, 2240), 0.08), ("u", (300, 870, 2240), 0.11), ("V", (640, 1190, 2390), 0.09),
        ("3", (490, 1350, 1690), 0.12),
    ]
)
CONSONANTS = (
    Phone("m", (280, 1000, 2200), 0.07, 0.7, nasal_zero=1000), Phone("n", (280, 1500, 2500), 0.06, 0.7,
                                                                     nasal_zero=1600),
    Phone("N", (280, 2000, 2700), 0.07, 0.7, nasal_zero=3000), Phone("l", (360, 1300, 2700), 0.06, 0.7),
    Phone("r", (350, 1060, 1380), 0.06, 0.7), Phone("w", (300, 610, 2200), 0.06, 0.7),
    Phone("j", (260, 2070, 3020), 0.05, 0.7),
    Phone("s", _ALV, 0.11, 0.0, fric=1.0, band=(5500, 3000)), Phone("S", _PAL, 0.11, 0.0, fric=1.0,
                                                                    band=(3200, 2000)),
    Phone("f", _LAB, 0.10, 0.0, fric=0.35, band=(4500, 7000)), Phone("T", _ALV, 0.09, 0.0, fric=0.3,
                                                                     band=(5000, 7000)),
    Phone("h", (500, 1500, 2500), 0.07, 0.0, asp=0.8),
    Phone("z", _ALV, 0.08, 0.4, fric=0.7, band=(5500, 3000)), Phone("v", _LAB, 0.07, 0.4, fric=0.3,
                                                                    band=(4500, 7000)),
    Phone("p", _LAB, 0.09, 0.0, fric=0.8, band=(1200, 2000), stop=True),
    Phone("t", _ALV, 0.09, 0.0, fric=1.0, band=(4500, 3000), stop=True),
    Phone("k", _VEL, 0.09, 0.0, fric=1.0, band=(2200, 1200), stop=True),
    Phone("b", _LAB, 0.07, 0.15, fric=0.5, band=(1200, 2000), stop=True),
    Phone("d", _ALV, 0.07, 0.15, fric=0.6, band=(4500, 3000), stop=True),
    Phone("g", _VEL, 0.07, 0.15, fric=0.6, band=(2200, 1200), stop=True),
)
INVENTORY = VOWELS + CONSONANTS
_FRIC_GAIN = 2.5  # frication bands have unit peak; vowels peak ~20 dB up: fricatives land ~5-10 dB below


@dataclass(frozen=True)
class Voice:
    """A speaker: everything that stays the same across their utterances."""

    tract: float  # formant scale: 1 = adult male reference, >1 = shorter vocal tract
    formant_idio: tuple[float, ...]  # per-formant factors (F1..F5) on top of ``tract``
    accent: tuple[tuple[float, ...], ...]  # per phone of INVENTORY: factors on its F1..F3
    bandwidth: float  # formant bandwidth scale (wider: softer, breathier-sounding resonances)
    f0: float  # mean pitch (Hz)
    intonation_st: float  # pitch movement within an utterance (std, semitones)
    declination_st: float  # pitch drop across an utterance (semitones)
    tilt_db: float  # glottal source spectral slope (dB/octave, before +6 dB/oct lip radiation)
    breath: float  # aspiration noise relative to the pulses
    jitter: float  # cycle-to-cycle pitch perturbation (relative std)
    shimmer: float  # cycle-to-cycle amplitude perturbation (relative std)
    rate: float  # duration factor (>1: slower speech)
    nasality: float  # velopharyngeal coupling in vowels (0: fully oral)


def _spread(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Log-uniform draw in [lo, hi], its width scaled around the geometric centre by SPEAKER_SPREAD."""
    centre, half = (np.log(lo) + np.log(hi)) / 2, (np.log(hi) - np.log(lo)) / 2 * SPEAKER_SPREAD
    return float(np.exp(centre + rng.uniform(-half, half)))


def sample_voice(rng: np.random.Generator) -> Voice:
    """Draw a speaker. Pitch correlates with tract length (larger speakers are lower), as in real voices."""
    tract = _spread(rng, 0.84, 1.20)
    f0 = float(np.clip(125.0 * tract**2.6 * np.exp(rng.normal(0, 0.15 * SPEAKER_SPREAD)), 70, 320))
    return Voice(
        tract=tract,
        formant_idio=tuple(np.exp(rng.normal(0, FORMANT_IDIOSYNCRASY * SPEAKER_SPREAD, 5)).tolist()),
        accent=tuple(map(tuple, np.exp(rng.normal(0, ACCENT * SPEAKER_SPREAD, (len(INVENTORY), 3))).tolist())),
        bandwidth=_spread(rng, 0.75, 1.6),
        f0=f0,
        intonation_st=_spread(rng, 1.2, 4.5),
        declination_st=_spread(rng, 0.5, 4.0),
        tilt_db=_spread(rng, 8.0, 18.0),
        breath=_spread(rng, 0.02, 0.4),
        jitter=_spread(rng, 0.004, 0.03),
        shimmer=_spread(rng, 0.03, 0.2),
        rate=_spread(rng, 0.75, 1.35),
        nasality=_spread(rng, 0.05, 0.6),
    )


def _phone_sequence(rng: np.random.Generator, seconds: float, rate: float) -> list[tuple[int, float]]:
    """Random syllables (C)(C)V(C)(C) with word pauses: ``(inventory index, duration)`` pairs."""
    n_v = len(VOWELS)
    seq: list[tuple[int, float]] = [(-1, rng.uniform(0.05, 0.25))]  # leading silence
    total = seq[0][1]
    while total < seconds:
        onset, coda = rng.choice(3, p=[0.3, 0.55, 0.15]), rng.choice(3, p=[0.5, 0.4, 0.1])
        syllable = [*(n_v + rng.integers(len(CONSONANTS), size=onset)), rng.integers(n_v),
                    *(n_v + rng.integers(len(CONSONANTS), size=coda))]
        if rng.random() < 0.15:
            syllable.append(-1)  # a pause between words
        for idx in syllable:
            base = 0.18 if idx < 0 else INVENTORY[idx].dur
            dur = base * rate * float(np.exp(rng.normal(0, 0.2)))
            seq.append((int(idx), dur))
            total += dur
    return seq


def _segments(seq: list[tuple[int, float]], voice: Voice) -> np.ndarray:
    """Phones -> rows ``[dur, voice, asp, fric, F1, F2, F3, band_c, band_w, nasal_pole, nasal_zero]``."""
    rows = []
    oral_pole = 450.0 * voice.tract
    vowel_zero = oral_pole * (1 + voice.nasality)
    for idx, dur in seq:
        if idx < 0:
            rows.append([dur, 0, 0, 0, 500, 1500, 2500, 4000, 4000, oral_pole, oral_pole])
            continue
        p = INVENTORY[idx]
        f = np.multiply(p.formants, voice.accent[idx])
        band = [min(p.band[0] * voice.tract, 7000.0), p.band[1]]
        if p.nasal_zero:
            nasal = [270.0 * voice.tract, p.nasal_zero * voice.tract]
        else:
            nasal = [oral_pole, vowel_zero if p.voice == 1.0 else oral_pole]
        if p.stop:  # closure (voice bar if voiced), burst, then aspiration when voiceless
            rows.append([dur * 0.7, p.voice, 0, 0, 200, *f[1:], *band, *nasal])
            rows.append([0.018, 0, 0, p.fric, *f, *band, *nasal])
            if p.voice == 0:
                rows.append([0.035, 0, 0.5, 0, *f, *band, *nasal])
        else:
            rows.append([dur, p.voice, p.asp, p.fric, *f, *band, *nasal])
    return np.asarray(rows, dtype=np.float64)


def _envelope(formants: np.ndarray, bw: np.ndarray, pole: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """Vocal-tract magnitude at FREQS per frame: ``formants (M, K)`` with bandwidths ``bw (K,)``, times a
    nasal pole-zero pair (``pole``/``zero`` ``(M,)``; identity when equal, a low-pass murmur when the zero
    is well above the pole). Each 2-pole resonator has DC gain 1, as in a cascade formant synthesiser.
    """
    b2 = 60.0**2
    p, z = pole[:, None], zero[:, None]
    power = ((FREQS - z) ** 2 + b2) * ((FREQS + z) ** 2 + b2) * (p**2 + b2) ** 2
    power /= ((FREQS - p) ** 2 + b2) * ((FREQS + p) ** 2 + b2) * (z**2 + b2) ** 2
    for k in range(formants.shape[1]):  # multiply squared magnitudes, one square root at the end (speed)
        fk, half2 = formants[:, k:k + 1], (bw[k] / 2) ** 2
        power *= (fk**2 + half2) ** 2 / (((FREQS - fk) ** 2 + half2) * ((FREQS + fk) ** 2 + half2))
    return np.sqrt(power)


def _ramp_track(times: np.ndarray, seg: np.ndarray, col: int, n: int) -> np.ndarray:
    """Per-sample level from segment levels, with short linear ramps between segments."""
    starts, ends = times[:-1], times[1:]
    ramp = np.minimum(0.006, (ends - starts) / 3)
    xp = np.stack([starts + ramp, ends - ramp], axis=1).ravel()
    fp = np.repeat(seg[:, col], 2)
    return np.interp(np.arange(n) / SR, xp, fp)


@dataclass(frozen=True)
class Channel:
    """One recording's channel: microphone/room EQ, background noise and level."""

    tilt_db: float  # overall slope, dB/octave around 1 kHz
    peaks: tuple[tuple[float, float, float], ...]  # peaking filters: (centre Hz, gain dB, width octaves)
    highpass_hz: float
    lowpass_hz: float  # 0: full band
    snr_db: float
    noise_colour_db: float  # noise slope, dB/octave: 0 white, -3 pink, -6 brown
    level_dbfs: float

    def eq(self, freqs: np.ndarray) -> np.ndarray:
        """Linear magnitude response at ``freqs`` (Hz)."""
        f = np.maximum(freqs, 1.0)
        octaves = np.log2(f / 1000)
        db = self.tilt_db * np.clip(octaves, -4, 3)
        for centre, gain, width in self.peaks:
            db += gain * np.exp(-0.5 * ((octaves - np.log2(centre / 1000)) / width) ** 2)
        db -= 10 * np.log10(1 + (self.highpass_hz / f) ** 4)  # 2nd-order high-pass
        if self.lowpass_hz:
            db -= 10 * np.log10(1 + (f / self.lowpass_hz) ** 8)  # 4th-order low-pass
        return np.asarray(10 ** (db / 20))


def sample_channel(rng: np.random.Generator) -> Channel:
    """A random channel: mostly wide-band microphones, some band-limited (telephone-like) ones."""
    peaks = tuple(
        (float(np.exp(rng.uniform(np.log(150), np.log(6000)))), float(rng.normal(0, CHANNEL_PEAK_DB)),
         float(rng.uniform(0.3, 1.2)))
        for _ in range(CHANNEL_PEAKS)
    )
    return Channel(
        tilt_db=float(rng.normal(0, CHANNEL_TILT_DB_PER_OCT)),
        peaks=peaks,
        highpass_hz=float(np.exp(rng.uniform(np.log(20), np.log(250)))),
        lowpass_hz=float(rng.uniform(3400, 7500)) if rng.random() < BANDLIMIT_PROB else 0.0,
        snr_db=float(SNR_DB[1] - (SNR_DB[1] - SNR_DB[0]) * rng.random() ** SNR_SKEW),
        noise_colour_db=float(rng.uniform(*NOISE_COLOUR_DB)),
        level_dbfs=float(rng.uniform(*LEVEL_DBFS)),
    )


def utterance(voice: Voice, rng: np.random.Generator) -> np.ndarray:
    """One recorded utterance of ``voice``: float32 samples in [-1, 1] at 16 kHz, 2-4 s long."""
    channel = sample_channel(rng)
    speech, active = _speak(voice, channel.eq(FREQS), rng)
    # Background noise at the channel's SNR (relative to the active speech), in its own colour.
    n, nfft = speech.size, _fast_len(speech.size)
    # The slope flattens below 100 Hz: a steep slope continued to DC would put most of the noise power
    # under the front end's lowest band, making the nominal SNR meaningless.
    octaves = np.log2(np.maximum(np.fft.rfftfreq(nfft, 1 / SR), 100.0) / 1000)
    noise = np.fft.irfft(_white_spectrum(rng, nfft) * 10 ** (channel.noise_colour_db * octaves / 20), nfft)[:n]
    speech_power = np.mean(speech[active] ** 2) if active.any() else np.mean(speech**2)
    noise *= np.sqrt(speech_power / (np.mean(noise**2) + 1e-20) / 10 ** (channel.snr_db / 10))
    mixed = speech + noise
    mixed *= 10 ** (channel.level_dbfs / 20) / (np.sqrt(np.mean(mixed**2)) + 1e-20)
    peak = np.max(np.abs(mixed))
    if peak > 0.98:  # never clip: scale the whole recording down instead
        mixed *= 0.98 / peak
    return mixed.astype(np.float32)


def _fast_len(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: FFT sizes that pocketfft handles fast (a prime size is ~20x slower)."""
    best = 2 ** int(np.ceil(np.log2(n)))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p2 = p35 * 2 ** max(0, int(np.ceil(np.log2(n / p35))))
            best = min(best, p2)
            p35 *= 3
        p5 *= 5
    return best


def _white_spectrum(rng: np.random.Generator, n: int) -> np.ndarray:
    """rfft of ``n`` samples of unit-variance white Gaussian noise, drawn directly (saves an FFT)."""
    bins = n // 2 + 1
    return (rng.standard_normal(bins) + 1j * rng.standard_normal(bins)) * np.sqrt(n / 2)


def _speak(voice: Voice, eq: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clean speech through ``eq`` (magnitude at FREQS) and the samples where speech is produced."""
    seconds = rng.uniform(*DURATION_S)
    rate = voice.rate * float(np.exp(rng.normal(0, 0.08)))
    seg = _segments(_phone_sequence(rng, seconds, rate), voice)
    n = 2 * int(seconds * SR / 2)
    times = np.concatenate([[0.0], np.cumsum(seg[:, 0])])
    mids = (times[:-1] + times[1:]) / 2
    gain_v, gain_a, gain_f = (_ramp_track(times, seg, c, n) for c in (1, 2, 3))

    # Pitch: speaker mean, session shift, declination and a smooth random phrase contour (semitones),
    # drawn at 100 Hz and interpolated; jitter perturbs each ~5 ms stretch of the period.
    t100 = np.arange(int(seconds * 100) + 2) / 100
    phrase = sum(np.cos(2 * np.pi * rng.uniform(0.3, 2.0) * t100 + rng.uniform(0, 2 * np.pi)) for _ in range(3))
    st100 = (rng.normal(0, SESSION_F0_ST) - voice.declination_st * (t100 / seconds - 0.5)
             + voice.intonation_st * phrase / np.sqrt(1.5))
    st = np.interp(np.arange(n) / SR, t100, st100)
    jitter = np.repeat(rng.normal(0, voice.jitter, n // 80 + 1), 80)[:n]
    phase = np.cumsum(voice.f0 * 2 ** (st / 12) * (1 + jitter) / SR)
    pulses_at = np.flatnonzero(np.diff(np.floor(phase))) + 1
    amplitude = np.clip(1 + rng.normal(0, voice.shimmer, pulses_at.size), 0.2, None)

    # Source spectra, applied in the frame pass below: glottal tilt with lip radiation (+6 dB/oct, no DC)
    # for the pulses; aspiration noise falls 6 dB/oct above 1 kHz before radiation. Both are scaled to
    # unit power (pulses: power = pulse energy per sample x the shaping filter's energy).
    tilt = voice.tilt_db + rng.normal(0, SESSION_TILT_DB)
    radiation = 2 * np.sin(np.pi * FREQS / SR)
    glottal = (1 + (FREQS / 150) ** 2) ** (-tilt / 12) * radiation
    glottal /= np.sqrt(np.sum(amplitude**2) / n * np.mean(glottal**2)) + 1e-12
    asp_shape = radiation / np.sqrt(1 + (FREQS / 1000) ** 2)
    asp_shape /= np.sqrt(np.mean(asp_shape**2))
    pulses = np.zeros(n)
    pulses[pulses_at] = amplitude
    # Aspiration is pre-shaped by asp_shape / glottal so the shared tract pass (which applies ``glottal``)
    # leaves it with asp_shape; drawn in the frequency domain, one inverse FFT.
    nfft = _fast_len(n)
    pre = np.interp(np.fft.rfftfreq(nfft, 1 / SR), FREQS, asp_shape / np.maximum(glottal, 1e-6))
    aspiration = np.fft.irfft(_white_spectrum(rng, nfft) * pre, nfft)[:n]
    tract_src = gain_v * pulses + (voice.breath * gain_v + gain_a) * aspiration
    fric_src = gain_f * rng.standard_normal(n)

    # Frame-rate tracks: formant targets at segment midpoints, linearly interpolated (coarticulation).
    m = n // HOP + 2
    centres = np.arange(m) * HOP / SR
    track = np.stack([np.interp(centres, mids, seg[:, c]) for c in range(4, 11)], axis=1)
    idio = np.asarray(voice.formant_idio)
    formants = np.concatenate(
        [track[:, :3] * voice.tract * idio[:3],
         np.broadcast_to([3300 * voice.tract * idio[3], 4300 * voice.tract * idio[4]], (m, 2))], axis=1)
    bw = np.array([60.0, 80.0, 120.0, 180.0, 250.0]) * voice.bandwidth
    tract_env = _envelope(formants, bw, track[:, 5], track[:, 6]) * (glottal * eq)
    band_env = (_FRIC_GAIN * eq) * np.exp(-0.5 * ((FREQS - track[:, 3:4]) / (track[:, 4:5] / 2)) ** 2)
    speech = _filter_frames((tract_src, fric_src), (tract_env, band_env))
    return speech, (gain_v + gain_a + gain_f) > 0.05


def _filter_frames(sources: tuple[np.ndarray, ...], envs: tuple[np.ndarray, ...]) -> np.ndarray:
    """Filter each source ``(n,)`` by its time-varying zero-phase ``env (M, F)`` and sum (overlap-add).

    Frame ``m`` (Hann-windowed, centred on sample ``m*HOP``) is filtered by ``env[m]``. Frames are
    zero-padded to NFFT = 4*HOP so the filter's ringing (on both sides: zero phase) does not wrap onto
    the frame itself; it lands in the padding, which is overlap-added too.
    """
    n, m = sources[0].size, envs[0].shape[0]
    window = np.hanning(2 * HOP + 1)[:-1]  # periodic Hann: frames at 50% overlap sum to one
    spectrum: np.ndarray | float = 0.0
    for x, env in zip(sources, envs, strict=True):
        padded = np.zeros((m + 1) * HOP)
        padded[HOP:HOP + n] = x  # frame m covers samples [(m-1)*HOP, (m+1)*HOP) of x
        frames = np.lib.stride_tricks.sliding_window_view(padded, 2 * HOP)[::HOP][:m] * window
        spectrum = spectrum + np.fft.rfft(frames, NFFT, axis=-1) * env
    # The frame sits at the start of each NFFT buffer, so the pre-ringing wraps to its last HOP samples:
    # rolled by one block, buffer block b of frame m lands on output block m + b + 1 (block (m+3)->m).
    y = np.fft.irfft(spectrum, NFFT, axis=-1)
    out = np.zeros((m + 3) * HOP)  # index 0 is sample -2*HOP
    for b in range(4):
        j = (b + 1) % 4
        out[j * HOP:(j + m) * HOP] += y[:, b * HOP:(b + 1) * HOP].ravel()
    return out[2 * HOP:2 * HOP + n]
