// The admin dashboard: polls /admin/api/state (every second while a refresh runs, every
// few seconds otherwise) and draws it. Served as a file because the page's
// Content-Security-Policy allows no inline script. Text from the server (error messages
// come from Simpro) is only ever set with textContent, never parsed as HTML. The growth
// chart is an SVG drawn by the service (/admin/api/growth.svg), parsed as XML and placed
// in the page so that admin.css colours it and its <title>s show as tooltips.
"use strict";

(() => {
  const FAST_MS = 1000;
  const SLOW_MS = 5000;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const cards = new Map(); // metric name -> its card element
  let state = null;
  let skewMs = 0; // server clock minus browser clock, so ages do not depend on the latter
  let timer = null;

  const now = () => Date.now() + skewMs;
  const number = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
  // "1234567.50" -> "1,234,567.50" on the exact text: amounts never go through a float.
  const grouped = (text) => text.replace(/^(-?)(\d+)/, (_, sign, digits) => sign + digits.replace(/\B(?=(\d{3})+$)/g, ","));

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    const h = Math.floor(s / 3600);
    if (h < 48) return `${h} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(h / 24)} days`;
  }

  // Scan durations: tenths of a second matter for short ones.
  function took(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    return seconds < 60 ? `${Number(seconds).toFixed(seconds < 10 ? 2 : 1)} s` : duration(seconds);
  }

  function clock(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    const sameDay = date.toDateString() === new Date(now()).toDateString();
    const time = date.toLocaleTimeString("en-GB");
    return sameDay ? time : `${date.toLocaleDateString("en-GB")} ${time}`;
  }

  const since = (iso) => (now() - Date.parse(iso)) / 1000;

  function relative(iso) {
    if (!iso) return "—";
    const seconds = since(iso);
    return seconds >= 0 ? `${duration(seconds)} ago` : `in ${duration(-seconds)}`;
  }

  function set(root, field, text, title) {
    const el = root.querySelector(`[data-field="${field}"]`);
    el.textContent = text;
    if (title !== undefined) el.title = title;
    return el;
  }

  function pill(el, kind, text) {
    el.className = `pill pill-${kind}`;
    el.textContent = text;
  }

  // -- drawing ---------------------------------------------------------------------

  function card(metric) {
    let el = cards.get(metric.metric);
    if (!el) {
      const template = document.getElementById("metric-card");
      el = template.content.firstElementChild.cloneNode(true);
      el.dataset.metric = metric.metric;
      el.querySelector('[data-action="refresh"]').addEventListener("click", () =>
        startRefresh(metric.metric, el),
      );
      document.getElementById("metrics").append(el);
      cards.set(metric.metric, el);
    }
    return el;
  }

  function drawMetric(metric) {
    const el = card(metric);
    el.dataset.state = metric.state;
    set(el, "label", metric.label);
    set(el, "description", metric.description);
    const labels = { fresh: "fresh", stale: "stale", refreshing: "refreshing", empty: "no value yet" };
    pill(el.querySelector('[data-field="state"]'), metric.state, labels[metric.state] || metric.state);

    // `display` is the exact value as text ("1234", "1234.50"); `value` counts cents for money.
    const value = set(el, "value", metric.display === null ? "—" : grouped(metric.display));
    value.dataset.value = metric.display === null ? "" : metric.display;
    set(el, "unit", metric.currency || "");

    if (metric.computedAt) {
      set(el, "age", duration(since(metric.computedAt)), `computed ${metric.computedAt}`);
      const staleIn = -since(metric.nextRefresh);
      set(el, "freshness", staleIn > 0 ? `fresh for ${duration(staleIn)} more` : "stale: older than its TTL");
      set(el, "nextRefresh", staleIn > 0 ? `${clock(metric.nextRefresh)} (${relative(metric.nextRefresh)})` : "due now");
    } else {
      set(el, "age", "—");
      set(el, "freshness", "no value yet");
      set(el, "nextRefresh", "as soon as possible");
    }

    set(
      el,
      "refreshing",
      metric.isRefreshing
        ? `yes${metric.refreshingSince ? `, for ${duration(since(metric.refreshingSince))}` : ""}`
        : "no",
    );

    const last = metric.lastRefresh;
    if (last) {
      set(el, "lastRefresh", `${last.ok ? "succeeded" : "failed"} ${clock(last.finishedAt)} in ${took(last.duration)}`)
        .className = last.ok ? "" : "bad";
      // A count read from Result-Total has no pages or invoices: only what it has is shown.
      const figures = [
        [last.pages, "page", "pages"],
        [last.requests, "request", "requests"],
        [last.retries, "retry", "retries"],
        [last.totalInvoices, "invoice", "invoices"],
      ].filter(([n]) => n !== null && n !== undefined);
      set(
        el,
        "scan",
        last.ok && figures.length
          ? figures.map(([n, one, many]) => `${number(n)} ${n === 1 ? one : many}`).join(" · ")
          : "—",
      );
    } else {
      set(el, "lastRefresh", "none yet");
      set(el, "scan", "—");
    }

    const error = metric.lastError;
    const errorEl = set(
      el,
      "lastError",
      error ? `${error.message} (${clock(error.at)}${error.current ? "" : ", since resolved"})` : "none",
    );
    errorEl.className = error && error.current ? "bad" : "";
    set(el, "storage", metric.storage === "redis" ? "Redis" : "memory (Redis unreachable)");
    const together = state.metrics.filter((m) => m.refreshGroup === metric.refreshGroup);
    set(
      el,
      "group",
      together.length > 1
        ? `in one scan with ${together.filter((m) => m !== metric).map((m) => m.label).join(" and ")}`
        : "on its own",
    );

    if (el.dataset.wasRefreshing === "1" && !metric.isRefreshing) {
      set(el, "message", last && last.ok ? "Refresh finished." : "Refresh failed: see the last error.");
    }
    el.dataset.wasRefreshing = metric.isRefreshing ? "1" : "";

    const button = el.querySelector('[data-action="refresh"]');
    if (!button.dataset.busy) {
      button.disabled = metric.isRefreshing;
      button.textContent = metric.isRefreshing ? "Refreshing…" : "Refresh now";
    }
  }

  function drawRedis(redis, storage) {
    const el = document.getElementById("redis");
    pill(el.querySelector('[data-field="health"]'), redis.healthy ? "fresh" : "error", redis.healthy ? "healthy" : "unreachable");
    set(el, "location", redis.location);
    set(el, "storage", storage === "redis" ? "Redis" : "memory: Redis is unreachable, the service reconnects by itself");
    set(el, "lastError", redis.lastError || "none").className = redis.healthy ? "" : "bad";
  }

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function drawHistory(history) {
    const labels = new Map(state.metrics.map((m) => [m.metric, m.label]));
    const body = document.querySelector("#history tbody");
    const rows = history.map((entry) => {
      const row = document.createElement("tr");
      row.className = entry.ok ? "" : "row-bad";
      cell(row, clock(entry.finishedAt)).title = entry.finishedAt || "";
      const label = labels.get(entry.metric) || entry.metric;
      cell(row, entry.mode === "incremental" ? `${label} (incremental sync)` : label);
      const result = document.createElement("span");
      pill(result, entry.ok ? "fresh" : "error", entry.ok ? "ok" : "failed");
      row.insertCell().append(result);
      cell(row, number(entry.count), "num");
      cell(row, number(entry.totalInvoices), "num");
      cell(row, took(entry.duration), "num");
      cell(row, number(entry.pages), "num");
      cell(row, number(entry.requests), "num");
      cell(row, number(entry.retries), "num");
      cell(row, entry.error || "", "error-cell");
      return row;
    });
    body.replaceChildren(...rows);
    document.getElementById("history-empty").hidden = history.length > 0;
  }

  function draw() {
    if (!state) return;
    state.metrics.forEach(drawMetric);
    drawRedis(state.redis, state.storage);
    const live = refreshing();
    const updated = document.getElementById("updated");
    updated.textContent = `${live ? "Live · " : ""}updated ${clock(state.now)}`;
    updated.classList.toggle("live", live);
  }

  const refreshing = () => Boolean(state && state.metrics.some((m) => m.isRefreshing));

  // -- the growth chart --------------------------------------------------------------

  const growth = { interval: "month", drawnFor: null, request: 0 };

  function chartStatus(text) {
    document.getElementById("growth-status").textContent = text;
  }

  async function loadChart() {
    const request = ++growth.request; // a later request (another interval) wins
    const interval = growth.interval;
    const chart = document.getElementById("growth-chart");
    chart.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(`/admin/api/growth.svg?interval=${interval}`, {
        cache: "no-store",
        credentials: "same-origin",
      });
      if (response.status === 401) {
        window.location.reload();
        return;
      }
      if (request !== growth.request) return;
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        if (request !== growth.request) return;
        growth.drawnFor = null; // try again at the next poll
        chart.dataset.state = "unavailable";
        chartStatus(body.error || `The chart is not available (the service answered ${response.status}).`);
        return;
      }
      const text = await response.text();
      if (request !== growth.request) return;
      const doc = new DOMParser().parseFromString(text, "image/svg+xml");
      const svg = doc.documentElement;
      if (svg.localName !== "svg" || doc.getElementsByTagName("parsererror").length) {
        throw new Error("the answer is not an SVG");
      }
      chart.replaceChildren(document.importNode(svg, true));
      chart.dataset.interval = interval;
      const periods = Number(svg.getAttribute("data-periods"));
      chart.dataset.state = periods ? "ready" : "empty";
      chartStatus(periods ? svg.getAttribute("aria-label") : "No customer has a dated invoice yet.");
    } catch (error) {
      if (request !== growth.request) return;
      growth.drawnFor = null;
      chart.dataset.state = "unavailable";
      chartStatus(`Could not load the chart (${error.message}); trying again.`);
    } finally {
      if (request === growth.request) chart.removeAttribute("aria-busy");
    }
  }

  // The history moves with the customers value: the chart is drawn again when it changes.
  function chartFollows() {
    const customers = state.metrics.find((m) => m.metric === "customers");
    if (!customers || customers.display === null) {
      chartStatus("The chart appears when the first full scan has finished.");
      return;
    }
    const key = `${customers.display}|${customers.computedAt}`;
    if (key === growth.drawnFor) return;
    growth.drawnFor = key;
    loadChart();
  }

  function chooseInterval(interval) {
    growth.interval = interval;
    for (const button of document.querySelectorAll("#growth [data-interval]")) {
      button.setAttribute("aria-pressed", String(button.dataset.interval === interval));
    }
    document.getElementById("growth-csv").href =
      `/api/simpro/customers/history?interval=${interval}&format=csv`;
    loadChart();
  }

  for (const button of document.querySelectorAll("#growth [data-interval]")) {
    button.addEventListener("click", () => chooseInterval(button.dataset.interval));
  }

  function banner(text) {
    const el = document.getElementById("banner");
    el.textContent = text || "";
    el.hidden = !text;
  }

  // -- talking to the service --------------------------------------------------------

  async function poll() {
    clearTimeout(timer);
    try {
      const response = await fetch("/admin/api/state", { cache: "no-store", credentials: "same-origin" });
      if (response.status === 401) {
        window.location.reload(); // the session ended: the server shows the sign-in form
        return;
      }
      if (!response.ok) throw new Error(`the service answered ${response.status}`);
      const sentAt = Date.now();
      state = await response.json();
      skewMs = Date.parse(state.now) - sentAt;
      draw();
      drawHistory(state.history);
      chartFollows();
      banner("");
    } catch (error) {
      banner(`Could not read the state (${error.message}); trying again.`);
    }
    timer = setTimeout(poll, refreshing() ? FAST_MS : SLOW_MS);
  }

  async function startRefresh(metric, el) {
    const button = el.querySelector('[data-action="refresh"]');
    const message = el.querySelector('[data-field="message"]');
    button.dataset.busy = "1";
    button.disabled = true;
    button.textContent = "Starting…";
    try {
      const response = await fetch(`/admin/api/refresh?metric=${encodeURIComponent(metric)}`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf },
      });
      if (response.status === 401) {
        window.location.reload();
        return;
      }
      const body = await response.json().catch(() => ({}));
      message.textContent =
        response.status === 202 ? "Refresh started." : body.error || `The service answered ${response.status}.`;
    } catch (error) {
      message.textContent = `Could not start the refresh (${error.message}).`;
    } finally {
      delete button.dataset.busy;
    }
    await poll();
  }

  // Ages and "in 5 min" move every second between polls, from the last state.
  setInterval(draw, 1000);
  poll();
})();
