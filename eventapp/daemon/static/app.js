// The job manager's dashboard: reads the REST API of the job manager that serves it (same origin)
// every REFRESH_MS and drives savepoints, stop-with-savepoint and cancel. Vanilla JS, no build
// step; the chart is uPlot (vendor/uPlot.iife.min.js, see vendor/README.md).
(() => {
  "use strict";

  const REFRESH_MS = 1500;
  const POLL_MS = 500;
  const TOKEN_KEY = "eventapp.dashboard.token";
  const CHART_HEIGHT = 260;
  const MAX_EXCEPTIONS = 32;
  // Unreachable polls of a savepoint operation tolerated before giving up (the job manager may be
  // restarting its REST thread's connection; it never answers for long once the job has ended).
  const MAX_POLL_ERRORS = 20;

  const $ = (id) => document.getElementById(id);
  const DASH = "–";

  let jobId = new URLSearchParams(window.location.search).get("job");
  let lastState = null;
  let chart = null;
  let chartKey = "";
  let exceptionsKey = null;

  // --- the REST API ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function token() {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_exc) {
      return "";
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const bearer = token();
    if (bearer && method !== "GET") headers.Authorization = `Bearer ${bearer}`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (exc) {
      throw new ApiError(0, `the job manager is unreachable (${exc.message || exc})`);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_exc) {
        data = null;
      }
    }
    if (!response.ok) {
      const detail =
        data && Array.isArray(data.errors) && data.errors.length ? data.errors.join("; ") : text || response.statusText;
      if (response.status === 401) {
        throw new ApiError(
          401,
          `401 Unauthorized: ${detail}. Paste the job manager's token into "API token" above and retry.`,
        );
      }
      throw new ApiError(response.status, `${response.status} ${response.statusText}: ${detail}`);
    }
    return data;
  }

  const jobPath = () => `/jobs/${encodeURIComponent(jobId)}`;

  // --- formatting -----------------------------------------------------------------------------

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);

  function fmtInt(v) {
    return isNum(v) ? Math.round(v).toLocaleString("en-US") : DASH;
  }

  function fmtBytes(v) {
    if (!isNum(v)) return DASH;
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = v;
    let unit = 0;
    while (Math.abs(value) >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
  }

  function fmtIso(ms) {
    if (ms === null || ms === undefined) return DASH;
    if (!isNum(ms)) return String(ms);
    const date = new Date(ms);
    if (Number.isNaN(date.getTime())) return ms > 0 ? "+∞" : "−∞";
    return date.toISOString();
  }

  function fmtSeconds(s) {
    if (!isNum(s)) return DASH;
    if (Math.abs(s) < 1) return `${(s * 1000).toFixed(0)} ms`;
    if (Math.abs(s) < 120) return `${s.toFixed(2)} s`;
    return fmtDuration(s * 1000);
  }

  function fmtDuration(ms) {
    if (!isNum(ms)) return DASH;
    let rest = Math.max(0, Math.floor(ms / 1000));
    const days = Math.floor(rest / 86400);
    rest -= days * 86400;
    const hours = Math.floor(rest / 3600);
    rest -= hours * 3600;
    const minutes = Math.floor(rest / 60);
    const seconds = rest - minutes * 60;
    const pad = (n) => String(n).padStart(2, "0");
    if (days > 0) return `${days}d ${pad(hours)}h ${pad(minutes)}m`;
    if (hours > 0) return `${hours}h ${pad(minutes)}m ${pad(seconds)}s`;
    if (minutes > 0) return `${minutes}m ${pad(seconds)}s`;
    return `${seconds}s`;
  }

  function fmtMs(v) {
    return isNum(v) ? `${v.toFixed(v >= 100 ? 0 : 1)} ms` : DASH;
  }

  // --- DOM helpers ----------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-") || key === "title") node.setAttribute(key, String(value));
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setText(id, value) {
    const node = $(id);
    const text = value === null || value === undefined || value === "" ? DASH : String(value);
    if (node.textContent !== text) node.textContent = text;
  }

  function cell(text, cls, raw) {
    return el("td", { class: cls, text, "data-value": raw === undefined || raw === null ? undefined : raw });
  }

  function stateBadge(state) {
    return el("span", { class: `state state-${state}`, text: state });
  }

  function setResult(node, status, message, location) {
    node.dataset.status = status;
    if (location) node.dataset.location = location;
    else delete node.dataset.location;
    node.replaceChildren();
    node.append(el("span", { class: "result-message", text: message }));
    if (location) node.append(" ", el("code", { class: "result-location", text: location }));
  }

  function showError(message) {
    const banner = $("error");
    banner.textContent = message;
    banner.hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
  }

  function setConnection(state, text) {
    const node = $("connection");
    node.dataset.state = state;
    node.textContent = text;
  }

  // --- rendering ------------------------------------------------------------------------------

  function renderJob(job) {
    lastState = job.state;
    setText("job-name", job.name);
    const state = $("job-state");
    state.textContent = job.state;
    state.className = `state state-${job.state}`;
    setText("job-parallelism", job.parallelism);
    setText("job-restarts", job.restarts);
    setText("job-uptime", fmtDuration(job.duration));
    setText("job-ready", job.ready ? "yes" : "no");
    $("job-ready").className = job.ready ? "ok" : "warn";
    setText("job-start-time", fmtIso(job["start-time"]));
    setText("job-restart-strategy", job["restart-strategy"]);
    document.title = `${job.name} · ${job.state} · eventapp`;

    const splits = $("splits").tBodies[0];
    splits.replaceChildren(
      ...(job.splits || [])
        .slice()
        .sort((a, b) => String(a.split).localeCompare(String(b.split), "en", { numeric: true }))
        .map((s) =>
        el(
          "tr",
          { "data-split": s.split },
          cell(s.split, "split"),
          cell(s.owner === null || s.owner === undefined ? DASH : String(s.owner), "owner num", s.owner),
          el("td", { class: "status" }, stateBadge(s.status)),
          cell(fmtInt(s.offset), "offset num", s.offset),
          cell(fmtInt(s.lag), "lag num", s.lag),
          cell(fmtIso(s.watermark), "watermark", s.watermark),
          cell(fmtSeconds(s.watermark_lag_s), "watermark-lag num", s.watermark_lag_s),
          cell(fmtBytes(s.state_size), "state-size num", s.state_size),
          cell(isNum(s.last_checkpoint) ? `#${s.last_checkpoint}` : DASH, "last-checkpoint num", s.last_checkpoint),
          cell(fmtInt(s.records_in), "records-in num", s.records_in),
          cell(fmtInt(s.records_out), "records-out num", s.records_out),
          cell(fmtInt(s.dead_letters), "dead-letters num", s.dead_letters),
        ),
      ),
    );

    const slots = $("slots").tBodies[0];
    slots.replaceChildren(
      ...(job.slots || []).map((s) =>
        el(
          "tr",
          { "data-subtask": s.subtask },
          cell(String(s.subtask), "subtask num"),
          el("td", { class: "status" }, stateBadge(s.status)),
          cell(fmtInt(s.attempt), "attempt num", s.attempt),
          cell(s.pid === null || s.pid === undefined ? DASH : String(s.pid), "pid num", s.pid),
          cell(s["start-time"] ? fmtIso(s["start-time"]) : DASH, "start-time"),
          cell((s.splits || []).join(", "), "splits"),
          cell(fmtSeconds(s.restore_s), "restore num", s.restore_s),
          cell(fmtSeconds(s.busy_s), "busy num", s.busy_s),
          cell(fmtSeconds(s.idle_s), "idle num", s.idle_s),
        ),
      ),
    );
  }

  function renderCheckpoints(cps) {
    const counts = cps.counts || {};
    const count = $("checkpoint-count");
    count.dataset.count = String(counts.completed || 0);
    setText("checkpoint-count", fmtInt(counts.completed || 0));
    setText("checkpoint-restored", fmtInt(counts.restored || 0));
    const summary = cps.summary || {};
    const parts = [];
    const latest = cps.latest && cps.latest.completed;
    if (latest) parts.push(`latest: ${fmtMs(latest.duration_ms)}, ${fmtBytes(latest.size_bytes)} (subtask ${latest.subtask})`);
    if (summary.duration_ms) parts.push(`duration avg ${fmtMs(summary.duration_ms.avg)}, max ${fmtMs(summary.duration_ms.max)}`);
    if (summary.size_bytes) parts.push(`size avg ${fmtBytes(summary.size_bytes.avg)}`);
    if (summary.pause_ms) parts.push(`pause avg ${fmtMs(summary.pause_ms.avg)}`);
    $("checkpoint-stats").textContent = parts.length ? `(${parts.join("; ")})` : "";

    const history = (cps.history || []).filter((c) => isNum(c.triggered_ms)).slice();
    history.sort((a, b) => a.triggered_ms - b.triggered_ms);
    const key = history.map((c) => `${c.subtask}@${c.triggered_ms}`).join(",");
    if (key === chartKey) return;
    chartKey = key;
    const container = $("checkpoint-chart");
    container.dataset.points = String(history.length);
    if (!history.length) return;
    const data = [
      history.map((c) => c.triggered_ms / 1000),
      history.map((c) => (isNum(c.duration_ms) ? c.duration_ms : null)),
      history.map((c) => (isNum(c.size_bytes) ? c.size_bytes : null)),
    ];
    if (chart === null) {
      container.replaceChildren();
      chart = new uPlot(chartOptions(container), data, container);
    } else {
      chart.setData(data);
    }
  }

  function chartOptions(container) {
    return {
      width: Math.max(300, container.clientWidth),
      height: CHART_HEIGHT,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, ms: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] },
        bytes: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [
        { label: "triggered", value: (_u, v) => (v === null ? DASH : fmtIso(v * 1000)) },
        {
          label: "duration",
          scale: "ms",
          stroke: "#2563eb",
          width: 2,
          points: { show: true, size: 5 },
          value: (_u, v) => fmtMs(v),
        },
        {
          label: "size",
          scale: "bytes",
          stroke: "#16a34a",
          width: 2,
          dash: [6, 4],
          points: { show: true, size: 5 },
          value: (_u, v) => fmtBytes(v),
        },
      ],
      axes: [
        {},
        { scale: "ms", label: "duration (ms)", size: 60 },
        {
          scale: "bytes",
          side: 1,
          label: "size",
          size: 70,
          grid: { show: false },
          values: (_u, ticks) => ticks.map(fmtBytes),
        },
      ],
    };
  }

  function renderExceptions(answer) {
    const history = (answer && answer.exceptionHistory) || { entries: [], truncated: false };
    const entries = history.entries || [];
    const key = JSON.stringify([entries.map((e) => [e.timestamp, e.subtask, e.attempt]), history.truncated]);
    if (key === exceptionsKey) return;
    exceptionsKey = key;
    $("exceptions-empty").hidden = entries.length > 0;
    $("exceptions-count").textContent = entries.length
      ? `(${entries.length}${history.truncated ? ", older ones left out" : ""})`
      : "";
    const list = $("exceptions");
    const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.dataset.key));
    list.replaceChildren(
      ...entries.map((e) => {
        const entryKey = `${e.timestamp}/${e.subtask}/${e.attempt}`;
        const stack = String(e.stacktrace || "");
        const where = [
          e.split ? `split ${e.split}` : null,
          e.operator ? `operator ${e.operator}` : null,
          isNum(e.position) ? `position ${e.position}` : null,
          e.record ? `record ${e.record}` : null,
        ].filter(Boolean);
        const details = el(
          "details",
          { "data-key": entryKey },
          el("summary", { text: stack.split("\n")[0] || e.exceptionName }),
          el("pre", { text: stack }),
        );
        details.open = open.has(entryKey);
        return el(
          "li",
          { class: "exception", "data-subtask": e.subtask, "data-attempt": e.attempt },
          el(
            "div",
            { class: "exception-head" },
            el("time", { text: fmtIso(e.timestamp) }),
            el("span", { class: "exception-subtask", text: `subtask ${e.subtask}` }),
            el("span", { class: "muted", text: `attempt ${e.attempt}` }),
            el("strong", { class: "exception-name", text: e.exceptionName }),
            e.exitCode === null || e.exitCode === undefined ? null : el("span", { class: "muted", text: `exit code ${e.exitCode}` }),
          ),
          where.length ? el("div", { class: "exception-where", text: where.join(" · ") }) : null,
          details,
        );
      }),
    );
  }

  // --- the refresh loop -----------------------------------------------------------------------

  const TERMINAL = new Set(["FINISHED", "FAILED", "CANCELED", "SUSPENDED"]);

  async function refresh() {
    try {
      if (!jobId) {
        const jobs = await api("GET", "/jobs");
        if (!jobs || !jobs.jobs || !jobs.jobs.length) throw new ApiError(404, "the job manager runs no job");
        jobId = jobs.jobs[0].id;
      }
      const [job, cps, exceptions] = await Promise.all([
        api("GET", jobPath()),
        api("GET", `${jobPath()}/checkpoints`),
        api("GET", `${jobPath()}/exceptions?maxExceptions=${MAX_EXCEPTIONS}`),
      ]);
      renderJob(job);
      renderCheckpoints(cps);
      renderExceptions(exceptions);
      setText("last-refresh", new Date().toLocaleTimeString());
      setConnection("live", "live");
      hideError();
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 0 && lastState && TERMINAL.has(lastState)) {
        setConnection("ended", `job ${lastState}; job manager gone`);
        showError(`The job ended (${lastState}) and its job manager has exited; the page shows its last state.`);
      } else {
        setConnection("down", "unreachable");
        showError(`Refresh failed: ${exc.message || exc}`);
        if (!(exc instanceof ApiError)) console.error(exc);
      }
    } finally {
      window.setTimeout(refresh, REFRESH_MS);
    }
  }

  // --- savepoints, stop, cancel ----------------------------------------------------------------

  const delay = (ms) => new Promise((resolve) => window.setTimeout(resolve, ms));

  async function pollOperation(requestId, result, what) {
    const started = Date.now();
    let errors = 0;
    for (;;) {
      await delay(POLL_MS);
      let answer;
      try {
        answer = await api("GET", `${jobPath()}/savepoints/${encodeURIComponent(requestId)}`);
        errors = 0;
      } catch (exc) {
        if (exc instanceof ApiError && exc.status === 0 && ++errors < MAX_POLL_ERRORS) continue;
        throw exc;
      }
      const status = answer && answer.status && answer.status.id;
      if (status === "COMPLETED") {
        const operation = answer.operation || {};
        if (operation["failure-cause"]) {
          setResult(result, "failed", `${what} failed: ${operation["failure-cause"]}`);
        } else {
          const seconds = ((Date.now() - started) / 1000).toFixed(1);
          setResult(result, "completed", `${what} completed in ${seconds} s:`, operation.location);
        }
        return;
      }
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      setResult(result, "in-progress", `${what} in progress (request ${requestId}, ${seconds} s)…`);
    }
  }

  async function operation(button, result, what, call) {
    button.disabled = true;
    setResult(result, "running", `${what}: triggering…`);
    try {
      if (!jobId) throw new ApiError(0, "no job yet: the dashboard has not reached the job manager");
      const answer = await call();
      const requestId = answer && answer["request-id"];
      if (!requestId) {
        setResult(result, "completed", `${what} requested.`);
        return;
      }
      setResult(result, "in-progress", `${what} in progress (request ${requestId})…`);
      await pollOperation(requestId, result, what);
    } catch (exc) {
      setResult(result, "failed", `${what} failed: ${exc.message || exc}`);
    } finally {
      button.disabled = false;
    }
  }

  function target(inputId, result) {
    const value = $(inputId).value.trim();
    if (!value) {
      setResult(result, "failed", "Enter the directory to write the savepoint under.");
      $(inputId).focus();
    }
    return value;
  }

  function wireControls() {
    $("token").value = token();
    updateTokenStatus();
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      try {
        if (value) window.sessionStorage.setItem(TOKEN_KEY, value);
        else window.sessionStorage.removeItem(TOKEN_KEY);
      } catch (_exc) {
        // no session storage (privacy mode): the token cannot be kept
      }
      updateTokenStatus();
    });
    $("token-clear").addEventListener("click", () => {
      try {
        window.sessionStorage.removeItem(TOKEN_KEY);
      } catch (_exc) {
        // nothing kept
      }
      $("token").value = "";
      updateTokenStatus();
    });

    $("savepoint-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const result = $("savepoint-result");
      const dir = target("savepoint-target", result);
      if (!dir) return;
      const format = $("savepoint-format").value;
      operation($("savepoint-button"), result, "Savepoint", () =>
        api("POST", `${jobPath()}/savepoints`, { "target-directory": dir, format }),
      );
    });

    $("stop-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const result = $("stop-result");
      const dir = target("stop-target", result);
      if (!dir) return;
      const drain = $("stop-drain").checked;
      operation($("stop-button"), result, drain ? "Stop with drained savepoint" : "Stop with savepoint", () =>
        api("POST", `${jobPath()}/stop`, { targetDirectory: dir, drain }),
      );
    });

    $("cancel-button").addEventListener("click", async () => {
      if (!window.confirm(`Cancel job ${jobId || ""} without a savepoint?`)) return;
      const result = $("cancel-result");
      const button = $("cancel-button");
      button.disabled = true;
      setResult(result, "running", "Cancelling…");
      try {
        await api("PATCH", `${jobPath()}?mode=cancel`);
        setResult(result, "completed", "Cancel requested.");
      } catch (exc) {
        setResult(result, "failed", `Cancel failed: ${exc.message || exc}`);
      } finally {
        button.disabled = false;
      }
    });

    window.addEventListener("resize", () => {
      if (chart !== null) chart.setSize({ width: Math.max(300, $("checkpoint-chart").clientWidth), height: CHART_HEIGHT });
    });
  }

  function updateTokenStatus() {
    setText("token-status", token() ? "token set (kept in this tab's session storage)" : "no token (kept in this tab's session storage only)");
  }

  wireControls();
  refresh();
})();
