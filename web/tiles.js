// The video grid (one tile per visible participant) and the roster list.
//
// Media is kept per participant, apart from the tiles: a track can arrive just before the
// tile that shows it exists, and a tile can be rebuilt without losing its tracks.

import { stateIcon } from './ui.js';

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 2);
  return letters.toUpperCase();
}

/** The muted-mic / camera-off icons for a participant, in a fixed order. */
function stateIcons(p) {
  const icons = [];
  if (!p.audio) icons.push(stateIcon('micOff', 'microphone muted'));
  if (!p.video) icons.push(stateIcon('camOff', 'camera off'));
  return icons;
}

export class Grid {
  constructor(container) {
    // The instructor is who everyone follows: their tile gets the spotlight, big, and
    // everyone else shares the strip below it.
    this.spotlight = container.querySelector('.spotlight');
    this.strip = container.querySelector('.strip');
    this.tiles = new Map(); // participant id -> tile element
    this.tracks = new Map(); // participant id -> Map(kind -> MediaStreamTrack)
    this.featured = null; // the spotlighted participant: theirs is the big tile instead
    // Hooks for the instructor's controls (controls.js): the strip's order, and extra
    // buttons on a tile. orderOf(id, self) -> number; decorate(tile, p, self).
    this.orderOf = null;
    this.decorate = null;
    // Called after tiles came, went or moved (board.js lays the board out again).
    this.onChange = null;
    // The studio TV's board plays no sound: the instructor's own screen has the class's.
    this.silent = false;
  }

  changed() {
    if (this.onChange) this.onChange();
  }

  /** Whether a participant (not the instructor) has the big tile now. */
  spotlightsParticipant() {
    return Boolean(this.featured && this.tiles.has(this.featured));
  }

  /** Whether a tile belongs in the big spot: the spotlighted one, else the instructor's. */
  isFeatured(id, role) {
    if (this.featured && this.tiles.has(this.featured)) return id === this.featured;
    return role === 'host';
  }

  /** Spotlight a participant (null: the instructor has the big tile again). */
  setFeatured(id) {
    this.featured = id || null;
    for (const [pid, tile] of this.tiles) this.place(pid, tile);
    this.changed();
  }

  place(id, tile) {
    const featured = this.isFeatured(id, tile.dataset.role);
    tile.classList.toggle('featured', featured);
    const home = featured ? this.spotlight : this.strip;
    if (tile.parentElement !== home) home.append(tile);
  }

  /** Apply the strip's order again (the instructor's sort changed). */
  reorder() {
    for (const [id, tile] of this.tiles) tile.style.order = this.orderFor(id, tile.classList.contains('self'));
    this.changed();
  }

  orderFor(id, self) {
    // In the strip: yourself first, then everyone else in join order (or the chosen sort).
    return String(this.orderOf ? this.orderOf(id, self) : (self ? 0 : 1));
  }

  /** Create or refresh the tile of `p` (a protocol Participant). */
  upsert(p, { self = false } = {}) {
    let tile = this.tiles.get(p.id);
    if (!tile) {
      tile = this.createTile(p, self);
      this.tiles.set(p.id, tile);
      tile.dataset.role = p.role;
      this.place(p.id, tile);
      if (this.featured === p.id) this.setFeatured(p.id); // the instructor's tile moves aside
      this.attachMedia(p.id);
      this.changed();
    }
    tile.classList.toggle('instructor', p.role === 'host');
    tile.dataset.role = p.role;
    tile.dataset.audio = String(p.audio);
    tile.dataset.video = String(p.video);
    const order = this.orderFor(p.id, self);
    if (tile.style.order !== order) {
      tile.style.order = order;
      this.changed();
    }
    const name = tile.querySelector('.name');
    name.textContent = p.name;
    tile.querySelector('.avatar').textContent = initials(p.name);
    const tag = tile.querySelector('.tag');
    tag.textContent = [self ? 'you' : '', p.role === 'host' ? 'instructor' : ''].filter(Boolean).join(' · ');
    tag.hidden = !tag.textContent;
    tile.querySelector('.state').replaceChildren(...stateIcons(p));
    this.refreshPlaceholder(p.id);
    if (this.decorate) this.decorate(tile, p, self);
    return tile;
  }

  createTile(p, self) {
    const tile = document.createElement('div');
    tile.className = `tile${self ? ' self' : ''}`;
    tile.dataset.participantId = p.id;
    tile.dataset.testid = 'tile';

    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = self || this.silent; // never play our own microphone back
    const placeholder = document.createElement('div');
    placeholder.className = 'placeholder';
    const avatar = document.createElement('div');
    avatar.className = 'avatar';
    // Video on its way (a track, no picture yet, or its pictures stopped): said, not black.
    const cue = document.createElement('span');
    cue.className = 'video-cue';
    cue.dataset.testid = 'video-cue';
    cue.textContent = 'Connecting video…';
    placeholder.append(avatar, cue);
    // A first picture (or a new size) ends the wait; an emptied source starts it again.
    for (const type of ['loadeddata', 'resize', 'emptied']) {
      video.addEventListener(type, () => this.refreshPlaceholder(p.id));
    }

    const label = document.createElement('div');
    label.className = 'label';
    label.dataset.testid = 'tile-label';
    const name = document.createElement('span');
    name.className = 'name';
    const tag = document.createElement('span');
    tag.className = 'tag';
    const state = document.createElement('span');
    state.className = 'state';
    state.style.display = 'inline-flex';
    state.style.gap = '4px';
    label.append(name, tag, state);

    tile.append(video, placeholder, label);
    return tile;
  }

  has(id) {
    return this.tiles.has(id);
  }

  hasMedia(id) {
    return (this.tracks.get(id)?.size ?? 0) > 0;
  }

  /** A track from `id` started (replaces an earlier track of the same kind). */
  addTrack(id, track) {
    if (!this.tracks.has(id)) this.tracks.set(id, new Map());
    // A remote track is muted while no packets come (the SFU paused it, the link stalled).
    track.addEventListener('mute', () => this.refreshPlaceholder(id));
    track.addEventListener('unmute', () => this.refreshPlaceholder(id));
    this.tracks.get(id).set(track.kind, track);
    this.attachMedia(id);
  }

  /** A track ended or its m-line went inactive: drop it wherever it is. */
  removeTrack(track) {
    for (const [id, byKind] of this.tracks) {
      if (byKind.get(track.kind) === track) {
        byKind.delete(track.kind);
        this.attachMedia(id);
      }
    }
  }

  /**
   * (Re)build the tile's source from its current tracks. A fresh MediaStream each time
   * is the most reliable way to make every browser notice added and removed tracks.
   */
  attachMedia(id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    const video = tile.querySelector('video');
    const tracks = [...(this.tracks.get(id)?.values() ?? [])];
    const current = video.srcObject ? video.srcObject.getTracks() : [];
    const same = current.length === tracks.length && tracks.every((t) => current.includes(t));
    if (!same) {
      video.srcObject = tracks.length ? new MediaStream(tracks) : null;
      if (tracks.length) {
        video.play().catch(() => {
          // Autoplay with sound can be refused before a user gesture; the Join click counts,
          // so this only happens on odd browsers. Muted playback still shows the video.
          video.muted = true;
          video.play().catch(() => {});
        });
      }
    }
    this.refreshPlaceholder(id);
  }

  /**
   * Show initials instead of video when there is no live video or the camera is off, and
   * say "Connecting video…" while a live track has no picture to show yet (or its
   * pictures stopped coming): a black box would look like a broken camera.
   */
  refreshPlaceholder(id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    const track = this.tracks.get(id)?.get('video');
    const live = Boolean(track) && track.readyState === 'live' && tile.dataset.video !== 'false';
    const picture = live && !track.muted && tile.querySelector('video').videoWidth > 0;
    tile.querySelector('.placeholder').hidden = picture;
    tile.dataset.connecting = String(live && !picture);
  }

  /** Remove a participant's tile and forget their media. */
  remove(id) {
    const tile = this.tiles.get(id);
    if (tile) {
      const video = tile.querySelector('video');
      video.srcObject = null;
      tile.remove();
      this.tiles.delete(id);
      if (id === this.featured) this.setFeatured(this.featured); // the instructor's turn again
      this.changed();
    }
    this.tracks.delete(id);
  }

  /** Hide a tile but keep its media (e.g. gallery mode turned off). */
  /** Mark who is speaking now (null: nobody). */
  setSpeaker(id) {
    for (const [pid, tile] of this.tiles) tile.classList.toggle('speaking', pid === id);
  }

  hide(id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.querySelector('video').srcObject = null;
    tile.remove();
    this.tiles.delete(id);
    if (id === this.featured) this.setFeatured(this.featured);
    this.changed();
  }

  ids() {
    return [...this.tiles.keys()];
  }

  clear() {
    for (const id of this.ids()) this.remove(id);
    this.tracks.clear();
  }
}

export class Roster {
  constructor(list, countEl) {
    this.list = list;
    this.countEl = countEl;
  }

  /** Render the whole list: instructor first, then in join order. */
  render(participants, selfId) {
    const sorted = [...participants].sort((a, b) => (a.role === 'host' ? 0 : 1) - (b.role === 'host' ? 0 : 1));
    const items = sorted.map((p) => {
      const li = document.createElement('li');
      li.dataset.participantId = p.id;
      li.dataset.testid = 'roster-item';
      li.dataset.audio = String(p.audio);
      li.dataset.video = String(p.video);
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = p.name;
      const tag = document.createElement('span');
      tag.className = 'tag';
      tag.textContent = [p.id === selfId ? 'you' : '', p.role === 'host' ? 'instructor' : '']
        .filter(Boolean).join(' · ');
      li.append(name, tag, ...stateIcons(p));
      return li;
    });
    this.list.replaceChildren(...items);
    this.countEl.textContent = String(participants.length);
  }
}
