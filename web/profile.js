// The optional "Heart-rate zones" form: what the server needs for zones, calories and
// training load (the `profile` event of docs/protocol.md). Remembered in localStorage,
// so the next class starts with it; sent after every join and whenever it is saved.

const STORAGE_KEY = 'pulseroom.profile';

// The protocol's ranges; the server refuses anything outside them.
const NUMBERS = {
  age: { min: 10, max: 100, integer: true, label: 'Age' },
  max_hr: { min: 100, max: 230, integer: true, label: 'Max heart rate' },
  resting_hr: { min: 30, max: 120, integer: true, label: 'Resting heart rate' },
  weight_kg: { min: 25, max: 300, integer: false, label: 'Weight' },
};

/** The form's markup; ids are prefixed so the form can be built once and moved around. */
function build(form) {
  form.classList.add('profile-form');
  form.noValidate = true;
  form.innerHTML = `
    <p class="hint">Optional. Your zones use your maximum heart rate: the one you measured, else an estimate from your age. Only the instructor and you see your heart rate.</p>
    <div class="profile-grid">
      <div class="pf-field"><label for="pf-age">Age</label>
        <input id="pf-age" name="age" type="number" inputmode="numeric" min="10" max="100" step="1" data-testid="profile-age" aria-describedby="pf-age-error">
        <p id="pf-age-error" class="error-text field-error" role="alert" hidden></p></div>
      <div class="pf-field"><label for="pf-max">Max HR (bpm)</label>
        <input id="pf-max" name="max_hr" type="number" inputmode="numeric" min="100" max="230" step="1" data-testid="profile-max-hr" aria-describedby="pf-max-error">
        <p id="pf-max-error" class="error-text field-error" role="alert" hidden></p></div>
      <div class="pf-field"><label for="pf-rest">Resting HR (bpm)</label>
        <input id="pf-rest" name="resting_hr" type="number" inputmode="numeric" min="30" max="120" step="1" data-testid="profile-resting-hr" aria-describedby="pf-rest-error">
        <p id="pf-rest-error" class="error-text field-error" role="alert" hidden></p></div>
      <div class="pf-field"><label for="pf-weight">Weight (kg)</label>
        <input id="pf-weight" name="weight_kg" type="number" inputmode="decimal" min="25" max="300" step="0.1" data-testid="profile-weight" aria-describedby="pf-weight-error">
        <p id="pf-weight-error" class="error-text field-error" role="alert" hidden></p></div>
      <div class="pf-field"><label for="pf-sex">Sex (for calories)</label>
        <select id="pf-sex" name="sex" data-testid="profile-sex">
          <option value="">Not set</option><option value="female">Female</option><option value="male">Male</option>
        </select></div>
    </div>
    <fieldset class="pf-method">
      <legend>Zones by</legend>
      <label><input type="radio" name="zone_method" value="hrmax" checked data-testid="profile-method-hrmax"> % of max HR</label>
      <label><input type="radio" name="zone_method" value="karvonen" data-testid="profile-method-karvonen"> Heart-rate reserve (Karvonen)</label>
    </fieldset>
    <p class="pf-error error-text" data-testid="profile-error" role="alert" hidden></p>
    <div class="row pf-actions">
      <button type="submit" class="primary" data-testid="profile-save">Save zones</button>
      <span class="hint pf-saved" data-testid="profile-status" role="status" aria-live="polite"></span>
    </div>`;
}

export class ProfileForm {
  /** onSave(profile) may return a promise (the `profile` event) that rejects on refusal. */
  constructor(form, { onSave }) {
    this.form = form;
    this.onSave = onSave;
    build(form);
    this.status = form.querySelector('.pf-saved');
    this.error = form.querySelector('.pf-error');
    this.fill(this.stored() || {});
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    form.addEventListener('input', () => { this.status.textContent = ''; });
  }

  /** Put the form somewhere else (pre-join panel → the in-class dialog). */
  mount(container) {
    container.append(this.form);
  }

  stored() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
      return saved && typeof saved === 'object' ? saved : null;
    } catch {
      return null;
    }
  }

  remember(profile) {
    try { localStorage.setItem(STORAGE_KEY, JSON.stringify(profile)); } catch { /* private mode */ }
  }

  /** Whether anything was entered (an empty profile needs no `profile` event). */
  hasValues(profile) {
    return Boolean(profile) && (Object.keys(NUMBERS).some((k) => profile[k] != null) || profile.sex != null || profile.zone_method === 'karvonen');
  }

  fill(profile) {
    const f = this.form.elements;
    for (const key of Object.keys(NUMBERS)) f[key].value = profile[key] ?? '';
    f.sex.value = profile.sex || '';
    f.zone_method.value = profile.zone_method === 'karvonen' ? 'karvonen' : 'hrmax';
  }

  setFieldError(input, message) {
    const box = this.form.querySelector(`#${input.getAttribute('aria-describedby')}`);
    box.textContent = message;
    box.hidden = !message;
    input.setAttribute('aria-invalid', String(Boolean(message)));
  }

  /**
   * The payload of the `profile` event, or null (with the reasons shown) if invalid;
   * `quiet` leaves the focus alone (checked on join, the form is not in view).
   */
  read({ quiet = false } = {}) {
    const f = this.form.elements;
    const profile = {};
    let firstBad = null;
    for (const [key, rule] of Object.entries(NUMBERS)) {
      const input = f[key];
      const text = input.value.trim();
      let message = '';
      if (text === '' && input.validity.badInput) message = `${rule.label} must be a number.`;
      else if (text !== '') {
        const value = Number(text);
        if (!Number.isFinite(value)) message = `${rule.label} must be a number.`;
        else if (rule.integer && !Number.isInteger(value)) message = `${rule.label} must be a whole number.`;
        else if (value < rule.min || value > rule.max) message = `${rule.label} must be between ${rule.min} and ${rule.max}.`;
        else profile[key] = rule.integer ? value : Math.round(value * 10) / 10;
      }
      this.setFieldError(input, message);
      if (message && !firstBad) firstBad = input;
    }
    if (!firstBad && profile.resting_hr != null && profile.max_hr != null && profile.resting_hr >= profile.max_hr) {
      this.setFieldError(f.resting_hr, 'Resting heart rate must be below your max heart rate.');
      firstBad = f.resting_hr;
    }
    if (f.sex.value) profile.sex = f.sex.value;
    profile.zone_method = f.zone_method.value === 'karvonen' ? 'karvonen' : 'hrmax';
    let formError = '';
    if (!firstBad && profile.zone_method === 'karvonen' && profile.resting_hr == null) {
      formError = 'Zones by heart-rate reserve need your resting heart rate.';
      this.setFieldError(f.resting_hr, 'Enter your resting heart rate (or choose % of max HR).');
      firstBad = f.resting_hr;
    }
    this.error.textContent = formError;
    this.error.hidden = !formError;
    if (firstBad) {
      if (!quiet) firstBad.focus();
      return null;
    }
    return profile;
  }

  async submit() {
    const profile = this.read();
    if (!profile) return;
    this.remember(profile);
    const button = this.form.querySelector('[type=submit]');
    button.disabled = true;
    try {
      const answer = await this.onSave(profile);
      this.status.textContent = answer && answer.hr_max
        ? `Saved: zones use a max heart rate of ${answer.hr_max} bpm.`
        : 'Saved: used when you join.';
    } catch (error) {
      this.error.textContent = `Not saved: ${error.message}`;
      this.error.hidden = false;
    } finally {
      button.disabled = false;
    }
  }
}
