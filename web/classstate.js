// The class's controls as this page sees them: the server's clock estimate, the clock and
// timer bar everyone sees, who is spotlighted, and (for the instructor) the controls
// panel. room.js feeds it the join ack and `class_state` events; it keeps the rest in step.

import { ServerClock } from './clock.js';
import { HostControls } from './controls.js';
import { ClassBar } from './timer.js';

export class ClassState {
  /**
   * bar: the clock/timer section; panel: the instructor's panel; grid: the tiles.js Grid;
   * request(event, payload, timeoutMs): the page's acked emit; people(): Map id -> p;
   * readingOf(id): latest heart-rate reading; render(): redraw tiles (who is visible
   * changes with the spotlight); toast(message, kind, ms); extras: rows for the panel.
   */
  constructor({ bar, panel, grid, request, people, readingOf, render, toast, extras = [] }) {
    this.grid = grid;
    this.render = render;
    this.controls = null;
    this.clock = new ServerClock(request);
    this.bar = new ClassBar(bar, this.clock);
    this.host = new HostControls({ panel, grid, request, clock: this.clock, people, readingOf, toast, extras });
  }

  /** Who everyone sees large now (null: the instructor). */
  get spotlight() {
    return this.controls ? this.controls.spotlight : null;
  }

  /** After every join ack: the controls as they are, and a fresh clock estimate. */
  joined(ack, isHost) {
    this.clock.hint(ack.server_time);
    this.clock.start();
    this.host.setEnabled(isHost);
    if (ack.you?.role === 'board') this.host.rankForBoard(true);
    this.host.inviteLink = isHost && ack.join_token
      ? `${window.location.origin}/r/${encodeURIComponent(ack.room.id)}#t=${ack.join_token}` : null;
    this.host.inviteButton.hidden = !this.host.inviteLink;
    this.apply(ack.controls || null);
  }

  /** A `class_state` event. */
  onState(payload) {
    this.clock.hint(payload.server_time);
    this.apply(payload.state);
  }

  apply(controls) {
    this.controls = controls;
    this.bar.apply(controls);
    this.host.apply(controls);
    this.grid.setFeatured(this.spotlight);
    this.render();
  }

  /** New heart-rate readings: the instructor's sort may change. */
  readingsChanged() {
    this.host.readingsChanged();
  }

  /** Out of the class (left, ended, connection lost): stop ticking and sampling. */
  stop() {
    this.clock.stop();
    this.bar.stop();
  }

  /** For tests and debugging (window.pulseroom.controls). */
  hook() {
    return { ...this.host.hook(), clock: this.clock.hook(), timer: this.bar.hook() };
  }
}
