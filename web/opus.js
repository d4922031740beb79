// Stereo Opus on the SDP text (RFC 7587), for the instructor's music (music.js).
//
// A browser encodes Opus in stereo only when the *answer* to its offer says `stereo=1`,
// and decodes it in stereo only when its own description says so: Chromium answers
// `stereo=1` to nobody by itself. So:
//   - the instructor's publish offer asks for stereo at up to 128 kbit/s (MUSIC_FMTP);
//     the SFU answers likewise and describes the track so in its subscribe offers
//     (sfu/opus.py);
//   - a subscriber's answer repeats `stereo=1` (and the rate) for every m-line whose
//     offer describes a stereo track (answerStereo).
// Pure functions of SDP text, no DOM: unit-tested with node --test.

export const MUSIC_BITRATE = 128000; // bit/s: what music gets (Opus is transparent well below)
export const MUSIC_FMTP = Object.freeze({ stereo: 1, 'sprop-stereo': 1, maxaveragebitrate: MUSIC_BITRATE });

function sections(sdp) {
  return sdp.split(/(?=^m=)/m).filter((part) => part);
}

function attributes(section, name) {
  const prefix = `a=${name}:`;
  return section.split(/\r?\n/).filter((line) => line.startsWith(prefix)).map((line) => line.slice(prefix.length).trim());
}

/** The payload type of the first Opus codec of an m-section, or null. */
function opusPayloadType(section) {
  for (const value of attributes(section, 'rtpmap')) {
    const [pt, encoding = ''] = value.split(' ');
    if (encoding.toLowerCase().startsWith('opus/')) return pt;
  }
  return null;
}

/** `a=b;c=d` as an object (keys lower case). */
export function parseFmtp(text) {
  const params = {};
  for (const item of text.split(';')) {
    const at = item.indexOf('=');
    if (at > 0) params[item.slice(0, at).trim().toLowerCase()] = item.slice(at + 1).trim();
  }
  return params;
}

/** mid -> the parameters of the Opus `a=fmtp` of each audio m-section with Opus. */
export function opusParameters(sdp) {
  const found = {};
  for (const section of sections(sdp)) {
    const pt = section.startsWith('m=audio') ? opusPayloadType(section) : null;
    const [mid] = attributes(section, 'mid');
    if (pt === null || mid === undefined) continue;
    const params = {};
    for (const value of attributes(section, 'fmtp')) {
      const space = value.indexOf(' ');
      if (value.slice(0, space) === pt) Object.assign(params, parseFmtp(value.slice(space + 1)));
    }
    found[mid] = params;
  }
  return found;
}

function merged(text, extra) {
  const keys = new Set(Object.keys(extra));
  const kept = text.split(';').map((item) => item.trim())
    .filter((item) => item && !keys.has(item.split('=')[0].trim().toLowerCase()));
  return [...kept, ...Object.entries(extra).map(([key, value]) => `${key}=${value}`)].join(';');
}

/**
 * The SDP with `extra(mid)` (an object, or null for none) merged into the Opus `a=fmtp` of
 * each audio m-section; the line is added after the rtpmap when there is none.
 */
export function withOpusParameters(sdp, extra) {
  return sections(sdp).map((section) => {
    const pt = section.startsWith('m=audio') ? opusPayloadType(section) : null;
    const [mid] = attributes(section, 'mid');
    const params = pt === null ? null : extra(mid);
    if (!params || !Object.keys(params).length) return section;
    const eol = section.includes('\r\n') ? '\r\n' : '\n';
    const lines = section.split(eol);
    const prefix = `a=fmtp:${pt} `;
    const at = lines.findIndex((line) => line.startsWith(prefix));
    if (at >= 0) {
      lines[at] = prefix + merged(lines[at].slice(prefix.length), params);
    } else {
      const rtpmap = lines.findIndex((line) => line.startsWith(`a=rtpmap:${pt} `));
      lines.splice(rtpmap + 1, 0, prefix + merged('', params));
    }
    return lines.join(eol);
  }).join('');
}

/** A publish offer asking for stereo music (every audio m-section). */
export function offerMusic(sdp) {
  return withOpusParameters(sdp, () => MUSIC_FMTP);
}

/** Whether Opus parameters describe a stereo stream. */
export function isStereo(params) {
  return params?.stereo === '1' || params?.['sprop-stereo'] === '1';
}

/**
 * A subscriber's answer that receives in stereo what the offer describes as stereo:
 * `stereo=1` and the offer's `maxaveragebitrate` on those m-lines, the rest unchanged.
 */
export function answerStereo(offerSdp, answerSdp) {
  const offered = opusParameters(offerSdp);
  return withOpusParameters(answerSdp, (mid) => {
    const params = offered[mid];
    if (!isStereo(params)) return null;
    const extra = { stereo: 1 };
    if (/^\d+$/.test(params.maxaveragebitrate ?? '')) extra.maxaveragebitrate = Number(params.maxaveragebitrate);
    return extra;
  });
}
