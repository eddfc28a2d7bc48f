/*! <simpro-counter>: a live number from simpro-counter, for any web page.
 *   <script src="https://counter.example.com/widget.js" defer></script>
 *   <simpro-counter label="Clients Served" suffix="+"></simpro-counter>
 * Attributes, theming and behaviour: docs/widget.md. No dependencies, no build step. */
(() => {
  "use strict";
  // A page may include the script twice (a CMS block and a theme): define() would throw.
  if (!window.customElements || customElements.get("simpro-counter")) return;

  // currentScript is only set while this file first runs, so find the API now. Relative to
  // the script's URL, so a service behind a path prefix (/counter/widget.js) works too.
  const script = document.currentScript;
  const API = script && script.src ? new URL("api/simpro/", script.src).href : "/api/simpro/";
  const MAX_WAIT = 60; // s: failures back off up to this (or refresh-interval, if longer)
  const TIMEOUT = 10000; // ms: a hung connection must not stall the polling for good
  const DURATION = 1000; // ms of the count-up
  const reducedMotion = matchMedia("(prefers-reduced-motion: reduce)");

  const CSS = `
:host{display:inline-block;text-align:var(--simpro-counter-align,center);line-height:1.2}
:host([hidden]){display:none}
.n{display:grid;white-space:nowrap;line-height:1.1;font-variant-numeric:tabular-nums;
color:var(--simpro-counter-color,inherit);font-family:var(--simpro-counter-font-family,inherit);
font-size:var(--simpro-counter-font-size,2.5em);font-weight:var(--simpro-counter-font-weight,700)}
.n>*{grid-area:1/1}
.g{visibility:hidden}
.l{display:block;margin-top:var(--simpro-counter-gap,.25em);
color:var(--simpro-counter-label-color,inherit);font-size:var(--simpro-counter-label-font-size,1em);
font-weight:var(--simpro-counter-label-font-weight,inherit)}
[aria-busy=true] #v{opacity:.4;animation:s 1.2s ease-in-out infinite}
@keyframes s{50%{opacity:.85}}
@media (prefers-reduced-motion:reduce){#v{animation:none!important}}
.sr{position:absolute;width:1px;height:1px;margin:-1px;padding:0;border:0;overflow:hidden;
clip:rect(0 0 0 0);white-space:nowrap}`;

  // A constructed stylesheet is not inline CSS: a page's Content-Security-Policy without
  // 'unsafe-inline' styles does not block it. Browsers without one get a <style>.
  let sheet = null;
  try {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  } catch (_) {
    sheet = null;
  }

  // The number's three children share one grid cell. The hidden ones reserve the width of
  // the expected value (`digits`) and of the final value, so the box keeps its size while
  // loading and counting up: no layout shift. Screen readers get the .sr text only, once
  // per value, instead of every frame of the animation.
  const HTML = `<div role="status" aria-live="polite" aria-busy="true">` +
    `<span class="n" part="number" aria-hidden="true"><span class="g" id="r"></span>` +
    `<span class="g" id="f"></span><span id="v">—</span></span>` +
    `<span class="l" part="label" aria-hidden="true"></span><span class="sr"></span></div>`;

  // No `prefix`: React 19 sets it as a property on a not-yet-defined element, and
  // Element's read-only `prefix` then throws.
  const ATTRIBUTES = ["src", "metric", "refresh-interval", "label", "suffix", "locale",
    "notation", "digits", "currency"];

  class SimproCounter extends HTMLElement {
    // Everything but the attributes is private: frameworks that set properties (React 19 does
    // when `name in element`) must not land on the element's state or methods.
    #value = null; // the value shown, kept through errors: a count, or a `total` string
    #currency = null; // from answers with `total` + `currency` (revenue)
    #failures = 0;
    #live = false;
    #timer = 0;
    #frame = 0;
    #request = null;

    static get observedAttributes() {
      return ATTRIBUTES;
    }

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      if (sheet) root.adoptedStyleSheets = [sheet];
      root.innerHTML = (sheet ? "" : `<style>${CSS}</style>`) + HTML;
    }

    connectedCallback() {
      this.#live = true;
      this.#render();
      this.#start();
    }

    disconnectedCallback() {
      this.#live = false;
      this.#stop();
    }

    attributeChangedCallback(name, old, now) {
      // Before connectedCallback (an upgrade reports every attribute): it renders and loads.
      if (!this.#live || old === now) return;
      if (name === "src" || name === "metric") this.#value = this.#currency = null;
      if (name === "src" || name === "metric" || name === "refresh-interval") this.#start();
      this.#render();
    }

    #el(selector) {
      return this.shadowRoot.querySelector(selector);
    }

    #attr(name) {
      return this.getAttribute(name) || "";
    }

    #url() {
      return this.#attr("src") || API + encodeURIComponent(this.#attr("metric") || "customers");
    }

    #interval() {
      return Math.max(0, parseFloat(this.#attr("refresh-interval")) || 0);
    }

    #format(n) {
      const notation = this.#attr("notation") || "standard";
      const options = { notation };
      // The answer's currency; the attribute's until then, to reserve room for the symbol.
      const currency = this.#currency || this.#attr("currency");
      if (currency) {
        // The currency's own decimals: cents for AUD ("compact" rounds by itself).
        options.style = "currency";
        options.currency = currency;
      }
      // The page's language when no locale is given: a German page gets "1.234".
      const lang = this.#attr("locale") || (this.closest("[lang]") || {}).lang || undefined;
      let formatter;
      try {
        formatter = new Intl.NumberFormat(lang, options);
      } catch (_) { // an unknown locale, notation or currency must not break the page
        formatter = new Intl.NumberFormat();
      }
      // A decimal string (`total`) is formatted exactly, to the cent, however large: format()
      // takes strings as decimals (older browsers convert them to a Number, which is exact
      // to the cent below 10^13).
      return formatter.format(n) + this.#attr("suffix");
    }

    #render() {
      const label = this.#attr("label");
      const digits = Math.min(15, Math.max(1, parseInt(this.#attr("digits"), 10) || 4));
      const text = this.#value === null ? "—" : this.#format(this.#value);
      this.#el(".l").textContent = label;
      this.#el("#r").textContent = this.#format(10 ** (digits - 1));
      this.#el("#f").textContent = this.#value === null ? "" : text;
      if (!this.#frame) this.#el("#v").textContent = text;
      this.#el("[role]").setAttribute("aria-busy", String(this.#value === null));
      // Rewriting the same text would make some screen readers announce it again.
      const spoken = this.#value === null ? label : `${text} ${label}`.trim();
      if (this.#el(".sr").textContent !== spoken) this.#el(".sr").textContent = spoken;
    }

    #start() {
      this.#stop();
      this.#load();
    }

    #stop() {
      clearTimeout(this.#timer);
      cancelAnimationFrame(this.#frame);
      this.#frame = 0;
      if (this.#request) this.#request.abort();
      this.#request = null;
    }

    async #load() {
      const request = (this.#request = new AbortController());
      const timeout = setTimeout(() => request.abort(), TIMEOUT);
      let wait = 0; // seconds until the next request; 0: none
      try {
        // The first request may be answered by the browser's HTTP cache (the API allows
        // 30 s); a poll must revalidate with the server, or it would see that copy again.
        const response = await fetch(this.#url(), {
          signal: request.signal,
          cache: this.#value === null ? "default" : "no-cache",
        });
        // Retry-After in seconds (the service sends 5 while the first value is computed);
        // NaN when absent, or an HTTP date, which we leave to the backoff.
        const retryAfter = parseFloat(response.headers.get("Retry-After"));
        if (!response.ok) throw retryAfter;
        const body = await response.json();
        // Counters answer `count`; money answers `total` as a decimal string + `currency`,
        // kept as the string: it is shown exactly, the Number only drives the count-up.
        const total = body.total == null ? null : String(body.total).trim();
        const n = typeof body.count === "number" ? body.count : total;
        if (n === null || n === "" || !isFinite(n)) {
          wait = Math.max(retryAfter || 0, this.#backoff()); // null: still being computed
        } else {
          this.#failures = 0;
          this.#currency = total === null ? null : body.currency || null;
          this.#show(n);
          wait = this.#interval(); // one value is enough unless asked to keep it live
        }
      } catch (error) {
        if (this.#request !== request) return; // stopped or restarted meanwhile
        // Network error, timeout or non-2xx: keep the number shown, try again later.
        wait = Math.max(typeof error === "number" && error > 0 ? error : 0, this.#backoff());
      } finally {
        clearTimeout(timeout);
      }
      if (this.#request !== request) return;
      this.#request = null;
      // Jitter, so that the visitors of a page do not all come back in the same second.
      if (wait) this.#timer = setTimeout(() => this.#load(), wait * (1000 + Math.random() * 200));
    }

    #backoff() {
      this.#failures += 1;
      return Math.max(this.#interval(), Math.min(MAX_WAIT, 2 ** this.#failures));
    }

    #show(n) {
      const from = this.#value;
      this.#value = n;
      cancelAnimationFrame(this.#frame);
      this.#frame = 0;
      this.#render(); // reserves the final width before any frame is painted
      if (from === n || reducedMotion.matches) return;
      const start = performance.now();
      const base = from === null ? 0 : +from;
      const step = (now) => {
        const t = Math.min(1, (now - start) / DURATION);
        const eased = 1 - (1 - t) ** 3; // ease-out: fast first, settling on the value
        // Money counts up in cents (the formatter rounds), counts in whole numbers.
        const x = base + (n - base) * eased;
        this.#el("#v").textContent = this.#format(t < 1 ? (this.#currency ? x : Math.round(x)) : n);
        this.#frame = t < 1 ? requestAnimationFrame(step) : 0;
      };
      step(start);
    }
  }

  // Each attribute is also a property (refresh-interval: refreshInterval), as on built-in
  // elements, so frameworks may set either.
  for (const name of ATTRIBUTES) {
    const property = name.replace(/-(.)/g, (_, letter) => letter.toUpperCase());
    Object.defineProperty(SimproCounter.prototype, property, {
      get() {
        return this.getAttribute(name);
      },
      set(value) {
        if (value === null || value === undefined) this.removeAttribute(name);
        else this.setAttribute(name, value);
      },
    });
  }

  customElements.define("simpro-counter", SimproCounter);
})();
