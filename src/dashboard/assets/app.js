// tickwire dashboard: vanilla JS, no dependencies, no build step.
//
// Data flow: WebSocket messages update plain per-symbol state objects (cheap,
// bounded) and mark the symbol dirty; one requestAnimationFrame callback per
// frame writes the dirty rows to the DOM and redraws charts. Nothing touches
// the DOM per message, so the whole demo feed subscribed at once stays smooth.
"use strict";

(function () {
  const STORE_KEY = "tickwire.symbols";
  const SELECTED_KEY = "tickwire.selected";
  const DEFAULT_SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA", "BTC-USD", "ETH-USD", "EURUSD", "USDJPY"];
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const HISTORY_BUCKET_MS = 250; // one chart point per symbol per 250 ms
  const HISTORY_POINTS = 480; // = 2 minutes
  const SPARK_POINTS = 240; // = 1 minute
  const LATENCY_WINDOW_MS = 10000;
  const LATENCY_MAX_SAMPLES = 50000;
  const SERIES_POINTS = 120; // server / latency charts: 2 minutes at 1 Hz

  const $ = (id) => document.getElementById(id);
  const el = {
    conn: $("conn"), connText: $("conn-text"), retry: $("retry-now"),
    clientRate: $("client-rate"), rtt: $("rtt"), clock: $("clock"),
    search: $("symbol-search"), results: $("symbol-results"), addAll: $("add-all"), clearAll: $("clear-all"),
    rows: $("rows"), empty: $("empty"), count: $("count"),
    chartSym: $("chart-sym"), chartName: $("chart-name"), chartPx: $("chart-px"), chartChg: $("chart-chg"),
    chartHilo: $("chart-hilo"), chartRange: $("chart-range"), bigChart: $("big-chart"),
    e2eP50: $("e2e-p50"), e2eP99: $("e2e-p99"), e2eN: $("e2e-n"), e2eChart: $("e2e-chart"), clockOffset: $("clock-offset"),
    srvConns: $("srv-conns"), srvMsgs: $("srv-msgs"), srvP50: $("srv-p50"), srvP99: $("srv-p99"),
    srvUptime: $("srv-uptime"), srvChart: $("srv-chart"), toast: $("toast"),
    calm: $("calm"), viewRate: $("view-rate"),
  };

  // ---------------------------------------------------------------- state
  const meta = new Map(); // sym -> {sym, name, class, price_decimals, qty_decimals}
  let universe = []; // the /api/symbols list, in server order
  let selection = []; // watched symbols, in display order
  let selected = null; // symbol shown in the big chart
  const quotes = new Map(); // sym -> per-symbol state (see newQuote)
  const dirty = new Set(); // symbols whose row needs repainting
  let structureDirty = true; // rows added / removed
  let sideDirty = true; // KPI panels need repainting
  const debug = {
    received: Object.create(null), frames: 0, renderMs: 0, maxRenderMs: 0, connects: 0, resyncs: 0, serverErrors: {},
    // Every tick/snapshot seq seen per symbol ("s<seq>" for snapshots), the
    // first SEEN_MAX of each: the browser test checks exactly-once with it.
    seen: Object.create(null), sseOpens: 0,
    longTasks: 0, maxLongTaskMs: 0,
  };
  const SEEN_MAX = 2000;
  // Long tasks (the Long Tasks API: the main thread busy for over 50 ms at a
  // stretch, so clicks and frames wait): counted, and the longest kept, for
  // the browser test's responsiveness check and for anyone debugging a slow page.
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        debug.longTasks++;
        debug.maxLongTaskMs = Math.max(debug.maxLongTaskMs, e.duration);
      }
    }).observe({ type: "longtask" });
  } catch (e) { /* a browser without the Long Tasks API */ }
  // Calm view: the watchlist throttled to one update per symbol per CALM_MS
  // (the server keeps the newest), the selected symbol's chart every tick.
  const CALM_MS = 250;
  const CALM_KEY = "tickwire.calm";
  let calm = false;
  // The user's own choice with the toggle ("1" calm, "0" every tick), or
  // null: then the page goes calm by itself when the stream gets too fast
  // to paint (AUTO_CALM_RATE).
  let calmChoice = null;
  try { calmChoice = localStorage.getItem(CALM_KEY); calm = calmChoice === "1"; } catch (e) { /* private mode */ }
  // Past this many messages per second for AUTO_CALM_SECONDS running the
  // watchlist goes calm (unless the user chose): more than anyone reads
  // (200 symbols at 50/s is 10,000 messages/s; the demo's 40 symbols send
  // ~700/s).
  const AUTO_CALM_RATE = 2000;
  const AUTO_CALM_SECONDS = 2;
  let busySeconds = 0;
  const acked = new Set(); // symbols the server confirmed on this connection

  function newQuote(sym) {
    return {
      sym, first: null, px: null, bid: null, ask: null, qty: null, seq: null, ts: null,
      flash: 0, flashDir: 0, flashUntil: 0, count: 0, rate: 0, stale: true,
      hist: new Float64Array(HISTORY_POINTS), histT: new Float64Array(HISTORY_POINTS), histLen: 0, histHead: 0,
      sparkDirty: true, sparkAt: -1e9, paintedAt: -1e9, row: null, cells: null,
    };
  }

  // ------------------------------------------------------- number formats
  const fmtCache = new Map();
  function fmt(decimals) {
    let f = fmtCache.get(decimals);
    if (!f) {
      f = new Intl.NumberFormat("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
      fmtCache.set(decimals, f);
    }
    return f;
  }
  const pxDec = (sym) => (meta.get(sym) || { price_decimals: 2 }).price_decimals;
  const qtyDec = (sym) => (meta.get(sym) || { qty_decimals: 0 }).qty_decimals;
  function fmtPx(sym, v) { return v == null ? "–" : fmt(pxDec(sym)).format(v); }
  function fmtChg(sym, q) {
    if (q.px == null || q.first == null) return ["–", "–", 0];
    const d = q.px - q.first;
    const pct = q.first !== 0 ? (d / q.first) * 100 : 0;
    const dec = pxDec(sym);
    const rounded = Number(d.toFixed(dec));
    const sign = rounded > 0 ? "+" : rounded < 0 ? "−" : "";
    const pctText = fmt(2).format(Math.abs(pct));
    const pctSign = pctText === "0.00" ? "" : sign;
    return [sign + fmt(dec).format(Math.abs(rounded)), pctSign + pctText + "%", Math.sign(rounded)];
  }
  function fmtUs(us) {
    if (us == null || !isFinite(us)) return "–";
    const a = Math.abs(us);
    if (a < 1000) return us.toFixed(0) + " µs";
    if (a < 100000) return (us / 1000).toFixed(1) + " ms";
    if (a < 1e7) return (us / 1000).toFixed(0) + " ms";
    return (us / 1e6).toFixed(1) + " s";
  }
  function fmtCount(n) {
    if (n == null || !isFinite(n)) return "–";
    if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return Math.round(n).toLocaleString("en-US");
  }
  function fmtUptime(s) {
    s = Math.floor(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return "up " + (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  }
  const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;

  // ------------------------------------------------------------ selection
  function loadSelection() {
    const params = new URLSearchParams(location.search);
    let list = null;
    if (params.has("symbols")) list = params.get("symbols").split(",");
    if (!list) {
      try { list = JSON.parse(localStorage.getItem(STORE_KEY) || "null"); } catch (e) { list = null; }
    }
    if (!Array.isArray(list)) list = DEFAULT_SYMBOLS;
    list = list.map((s) => String(s).trim().toUpperCase()).filter((s) => s && meta.has(s));
    selection = Array.from(new Set(list));
    if (!params.has("symbols") && selection.length === 0 && localStorage.getItem(STORE_KEY) === null) {
      selection = universe.slice(0, 8).map((i) => i.sym);
    }
    const sel = params.get("selected") || localStorage.getItem(SELECTED_KEY);
    selected = sel && selection.includes(sel) ? sel : selection[0] || null;
  }
  function saveSelection() {
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(selection));
      if (selected) localStorage.setItem(SELECTED_KEY, selected);
    } catch (e) { /* private mode: the URL still carries it */ }
    const params = new URLSearchParams(location.search);
    params.set("symbols", selection.join(","));
    if (selected) params.set("selected", selected); else params.delete("selected");
    const url = location.pathname + "?" + params.toString().replace(/%2C/g, ",") + location.hash;
    history.replaceState(null, "", url);
  }
  function addSymbols(syms) {
    const fresh = syms.filter((s) => meta.has(s) && !selection.includes(s));
    if (!fresh.length) return;
    selection.push(...fresh);
    for (const s of fresh) if (!quotes.has(s)) quotes.set(s, newQuote(s));
    if (!selected) selected = fresh[0];
    structureDirty = true;
    saveSelection();
    conn.subscribe(fresh);
  }
  function removeSymbols(syms) {
    const gone = syms.filter((s) => selection.includes(s));
    if (!gone.length) return;
    selection = selection.filter((s) => !gone.includes(s));
    for (const s of gone) { quotes.delete(s); dirty.delete(s); }
    if (gone.includes(selected)) selected = selection[0] || null;
    structureDirty = true;
    saveSelection();
    conn.unsubscribe(gone);
  }
  function select(sym) {
    if (sym === selected) return;
    selected = sym;
    structureDirty = true;
    saveSelection();
    conn.focus();
  }

  // A token in the page's own URL (?token=JWT) goes along to the server's
  // token-protected endpoints: browsers cannot set headers on a WebSocket.
  const TOKEN = new URLSearchParams(location.search).get("token");
  function withToken(path) {
    if (!TOKEN) return path;
    return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
  }

  // ----------------------------------------------------------- connection
  const conn = (function () {
    let ws = null;
    let state = "connecting";
    let attempt = 0;
    let retryAt = 0;
    let retryTimer = 0;
    let nextId = 1;
    let pingTimer = 0;
    const pings = new Map(); // id -> send time (µs)
    // "ws", or "sse" once the WebSocket could not be opened twice in a row
    // (a proxy that strips upgrades, a blocked port): then an EventSource
    // on /sse carries the same ticks, and resumes by itself after a cut.
    let transport = "ws";
    let wsFailures = 0;
    let es = null;
    let sseTimer = 0;
    // The symbol subscribed with every tick while the calm view throttles
    // the rest (WebSocket only: an SSE stream has one throttle).
    let focusSent = null;

    function setState(s) {
      state = s;
      el.conn.dataset.state = s;
      el.retry.hidden = s !== "reconnecting";
      paintCountdown();
    }
    function paintCountdown() {
      if (state === "live") el.connText.textContent = transport === "sse" ? "live (SSE)" : "live";
      else if (state === "connecting") el.connText.textContent = "connecting";
      else {
        const s = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
        el.connText.textContent = s > 0 ? "reconnecting in " + s + " s" : "reconnecting";
      }
    }
    function send(obj) {
      if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(obj)); return true; }
      return false;
    }
    // Subscriptions are reconciled, not fired and forgotten: the server's
    // acknowledgements maintain `acked`, unacknowledged ops sit in `pending`,
    // and every change of the selection sends the difference between the
    // selection and what the server has (or will have). Control messages go
    // through a token bucket below the server's limit (10/s, bursts of 20);
    // what does not fit is sent as one batched diff once a token is back.
    const BUCKET = 16;
    const REFILL_PER_S = 8;
    let tokens = BUCKET;
    let tokensAt = performance.now();
    function takeToken() {
      const now = performance.now();
      tokens = Math.min(BUCKET, tokens + ((now - tokensAt) / 1000) * REFILL_PER_S);
      tokensAt = now;
      if (tokens < 1) return false;
      tokens -= 1;
      return true;
    }
    const pending = new Map(); // id -> {op, symbols}, in send order
    function chunks(list) {
      // Each message well under the server's 4 KiB limit.
      const out = [];
      let cur = [], bytes = 0;
      for (const sym of list) {
        if (cur.length && bytes + sym.length + 3 > 3000) { out.push(cur); cur = []; bytes = 0; }
        cur.push(sym);
        bytes += sym.length + 3;
      }
      if (cur.length) out.push(cur);
      return out;
    }
    function serverView() {
      const v = new Set(acked);
      for (const p of pending.values()) for (const s of p.symbols) { if (p.op === "subscribe") v.add(s); else v.delete(s); }
      return v;
    }
    function reconcile() {
      if (transport === "sse") { scheduleSse(); return; }
      if (!ws || ws.readyState !== WebSocket.OPEN) return; // onopen subscribes everything
      const view = serverView();
      const want = new Set(selection);
      const ops = [];
      for (const c of chunks(selection.filter((s) => !view.has(s)))) ops.push(["subscribe", c]);
      for (const c of chunks(Array.from(view).filter((s) => !want.has(s)))) ops.push(["unsubscribe", c]);
      for (const [op, symbols] of ops) {
        if (!takeToken()) { scheduleReconcile(Math.ceil(((1 - tokens) / REFILL_PER_S) * 1000) + 20); return; }
        const id = nextId++;
        send({ op, symbols, id });
        pending.set(id, { op, symbols });
      }
    }
    let reconcileTimer = 0;
    function scheduleReconcile(ms) {
      if (reconcileTimer) return;
      reconcileTimer = setTimeout(() => { reconcileTimer = 0; debug.resyncs++; reconcile(); }, ms);
    }
    function subscribe() { reconcile(); }
    function unsubscribe() { reconcile(); }
    function onAck(m) {
      if (m.id != null) pending.delete(m.id);
      const set = m.type === "subscribed";
      for (const s of m.symbols || []) { if (set) acked.add(s); else acked.delete(s); }
      if (set) focus();
    }
    // Calm view over WebSocket: the connection's default throttle is
    // CALM_MS; the selected symbol is re-subscribed with throttle_ms 0 (and
    // the one before it back to CALM_MS).
    function focus() {
      if (transport !== "ws" || !calm || !ws || ws.readyState !== WebSocket.OPEN) return;
      if (focusSent === selected || !selected || !acked.has(selected)) return;
      if (!takeToken()) { setTimeout(focus, 300); return; }
      send({ op: "subscribe", symbols: [selected], throttle_ms: 0, id: nextId++ });
      if (focusSent && acked.has(focusSent)) send({ op: "subscribe", symbols: [focusSent], throttle_ms: CALM_MS, id: nextId++ });
      focusSent = selected;
    }
    // `byUser`: the toggle was clicked; the choice is kept (and the page no
    // longer decides by itself).
    function setCalm(on, byUser) {
      calm = on;
      if (byUser) {
        calmChoice = on ? "1" : "0";
        try { localStorage.setItem(CALM_KEY, calmChoice); } catch (e) { /* private mode */ }
      }
      paintViewRate();
      // The throttle is the connection's (or the stream's): start afresh.
      if (transport === "sse") openSse(); else connect();
    }
    function paintViewRate() {
      el.calm.checked = calm;
      el.viewRate.textContent = calm ? "≤ " + 1000 / CALM_MS + "/s per symbol, chart every tick" : "every tick";
    }
    // An error reply ends its op. rate_limited ones carry no id (the server
    // drops the message unread), so any op may have been lost: forget what
    // is in flight and reconcile a second later (repeats are harmless).
    function onError(m) {
      debug.serverErrors[m.code] = (debug.serverErrors[m.code] || 0) + 1;
      if (m.id != null) pending.delete(m.id);
      if (m.code !== "rate_limited") return false;
      pending.clear();
      scheduleReconcile(1000 + Math.random() * 500);
      return true;
    }
    function connect() {
      clearTimeout(retryTimer);
      if (ws) { ws.onopen = ws.onclose = ws.onmessage = ws.onerror = null; try { ws.close(); } catch (e) { /* ignore */ } }
      if (state !== "reconnecting") setState("connecting");
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const throttle = calm ? "&throttle_ms=" + CALM_MS : "";
      const sock = new WebSocket(proto + "//" + location.host + withToken("/ws?policy=conflate" + throttle));
      ws = sock;
      let opened = false;
      sock.onopen = () => {
        opened = true;
        wsFailures = 0;
        focusSent = null;
        pings.clear();
        lastMessageAt = Date.now();
        debug.connects++;
        setState("live");
        for (const q of quotes.values()) q.stale = true;
        acked.clear();
        pending.clear();
        tokens = BUCKET;
        reconcile();
        ping();
      };
      sock.onmessage = (ev) => { lastMessageAt = Date.now(); onMessage(ev.data); };
      sock.onclose = () => {
        if (ws !== sock) return;
        ws = null;
        for (const q of quotes.values()) { q.stale = true; dirty.add(q.sym); }
        acked.clear();
        if (!opened && ++wsFailures >= 2) { startSse(); return; }
        scheduleRetry();
      };
      sock.onerror = () => { /* onclose follows and schedules the retry */ };
    }
    function scheduleRetry() {
      // Exponential backoff with "equal jitter": half fixed, half random, so a
      // restarted server is not hit by every dashboard at the same instant.
      const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempt));
      const delay = cap / 2 + Math.random() * (cap / 2);
      attempt++;
      retryAt = Date.now() + delay;
      setState("reconnecting");
      retryTimer = setTimeout(connect, delay);
    }
    function retryNow() { attempt = 0; wsFailures = 0; stopSse(); connect(); }

    // ------------------------------------------------ SSE fallback
    function startSse() {
      transport = "sse";
      clearTimeout(retryTimer);
      openSse();
    }
    function stopSse() {
      clearTimeout(sseTimer);
      if (es) { es.close(); es = null; }
      transport = "ws";
    }
    // A new selection is a new stream (its URL names the symbols).
    function scheduleSse() {
      clearTimeout(sseTimer);
      sseTimer = setTimeout(openSse, 250);
    }
    function openSse() {
      clearTimeout(sseTimer);
      if (es) { es.close(); es = null; }
      acked.clear();
      if (!selection.length) { setState("live"); return; }
      const throttle = calm ? "&throttle_ms=" + CALM_MS : "";
      const src = new EventSource("/sse?policy=conflate&symbols=" + encodeURIComponent(selection.join(",")) + throttle);
      es = src;
      if (state !== "reconnecting") setState("connecting");
      src.onopen = () => {
        debug.sseOpens++;
        debug.connects++;
        attempt = 0;
        for (const s of selection) acked.add(s);
        setState("live");
      };
      const onEvent = (e) => { if (es === src) onMessage(e.data); };
      src.addEventListener("tick", onEvent);
      src.addEventListener("snapshot", onEvent);
      // The server could not replay what these symbols missed: their
      // snapshots follow; until then they are stale.
      src.addEventListener("reset", (e) => {
        let r = null;
        try { r = JSON.parse(e.data); } catch (err) { return; }
        for (const s of (r && r.symbols) || []) { const q = quotes.get(s); if (q) { q.stale = true; dirty.add(s); } }
      });
      src.onerror = () => {
        if (es !== src) return;
        for (const q of quotes.values()) { q.stale = true; dirty.add(q.sym); }
        if (src.readyState === EventSource.CLOSED) {
          // Refused (not 200, or not text/event-stream): the browser gives
          // up; try again with our own backoff.
          es = null;
          const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempt));
          const delay = cap / 2 + Math.random() * (cap / 2);
          attempt++;
          retryAt = Date.now() + delay;
          setState("reconnecting");
          sseTimer = setTimeout(openSse, delay);
        } else {
          // The browser reconnects by itself, with Last-Event-ID.
          setState("connecting");
        }
      };
    }
    function ping() {
      if (!ws || ws.readyState !== WebSocket.OPEN || !takeToken()) return;
      const id = nextId++;
      if (send({ op: "ping", id })) pings.set(id, nowUs());
    }
    function onPong(m) {
      const t0 = pings.get(m.id);
      if (t0 == null) return;
      pings.delete(m.id);
      const t1 = nowUs();
      rttUs = t1 - t0;
      if (typeof m.ts === "number") clockOffsetUs = m.ts - (t0 + t1) / 2;
      sideDirty = true;
    }
    function onSubscribed() { attempt = 0; }
    // The server sends a heartbeat after 5 s of silence and we ping every
    // 5 s, so 15 s without any message means a dead (half-open) connection.
    let lastMessageAt = Date.now();
    setInterval(() => {
      if (state === "live" && ws && Date.now() - lastMessageAt > 15000) {
        const dead = ws;
        ws = null;
        dead.onopen = dead.onclose = dead.onmessage = dead.onerror = null;
        try { dead.close(); } catch (e) { /* ignore */ }
        for (const q of quotes.values()) { q.stale = true; dirty.add(q.sym); }
        acked.clear();
        scheduleRetry();
      }
    }, 1000);
    clearInterval(pingTimer);
    pingTimer = setInterval(ping, 5000);
    setInterval(() => { if (state === "reconnecting") paintCountdown(); }, 250);
    return {
      connect, subscribe, unsubscribe, retryNow, onPong, onSubscribed, onAck, onError, focus, setCalm, paintViewRate,
      get state() { return state; }, get transport() { return transport; },
    };
  })();

  let rttUs = null;
  let clockOffsetUs = null;

  // ------------------------------------------------------------- messages
  const lat = { t: new Float64Array(LATENCY_MAX_SAMPLES), v: new Float64Array(LATENCY_MAX_SAMPLES), head: 0, len: 0 };
  let clientMsgs = 0;
  let clientRate = 0;

  function onMessage(data) {
    let m;
    try { m = JSON.parse(data); } catch (e) { return; }
    clientMsgs++;
    switch (m.type) {
      case "tick":
      case "snapshot":
        onTick(m);
        break;
      case "subscribed":
        conn.onAck(m);
        conn.onSubscribed();
        break;
      case "unsubscribed":
        conn.onAck(m);
        break;
      case "pong":
        conn.onPong(m);
        break;
      case "error":
        if (!conn.onError(m)) toast((m.code || "error") + ": " + (m.message || ""));
        break;
      default:
        break; // heartbeat and anything newer
    }
  }

  function onTick(m) {
    if (m.type === "tick") debug.received[m.sym] = (debug.received[m.sym] || 0) + 1;
    const seen = debug.seen[m.sym] || (debug.seen[m.sym] = []);
    if (seen.length < SEEN_MAX) seen.push(m.type === "tick" ? m.seq : "s" + m.seq);
    const q = quotes.get(m.sym);
    if (!q) return; // a tick that raced our unsubscribe
    const now = performance.now();
    if (m.type === "tick") {
      q.count++;
      const e2e = nowUs() - m.ts;
      lat.t[lat.head] = now;
      lat.v[lat.head] = e2e;
      lat.head = (lat.head + 1) % LATENCY_MAX_SAMPLES;
      if (lat.len < LATENCY_MAX_SAMPLES) lat.len++;
    }
    if (q.first == null) q.first = m.px;
    if (q.px != null && !q.stale && m.px !== q.px) q.flash = m.px > q.px ? 1 : -1;
    q.px = m.px;
    q.bid = m.bid;
    q.ask = m.ask;
    q.qty = m.qty;
    q.seq = m.seq;
    q.ts = m.ts;
    q.stale = false;
    pushHistory(q, now, m.px);
    dirty.add(m.sym);
  }

  function pushHistory(q, now, px) {
    const bucket = Math.floor(now / HISTORY_BUCKET_MS);
    const last = (q.histHead - 1 + HISTORY_POINTS) % HISTORY_POINTS;
    if (q.histLen && Math.floor(q.histT[last] / HISTORY_BUCKET_MS) === bucket) {
      q.hist[last] = px;
      q.histT[last] = now;
    } else {
      q.hist[q.histHead] = px;
      q.histT[q.histHead] = now;
      q.histHead = (q.histHead + 1) % HISTORY_POINTS;
      if (q.histLen < HISTORY_POINTS) q.histLen++;
    }
    q.sparkDirty = true;
  }
  function historyTail(q, n) {
    const len = Math.min(n, q.histLen);
    const px = new Array(len), t = new Array(len);
    for (let i = 0; i < len; i++) {
      const j = (q.histHead - len + i + HISTORY_POINTS) % HISTORY_POINTS;
      px[i] = q.hist[j];
      t[i] = q.histT[j];
    }
    return { px, t };
  }

  // --------------------------------------------------------------- canvas
  const DPR = () => Math.min(window.devicePixelRatio || 1, 3);
  // Canvas CSS sizes are read once per resize: reading clientWidth after
  // this frame's text updates would force a synchronous layout per canvas.
  let sizeGen = 0;
  const sizes = new WeakMap();
  function prepCanvas(c) {
    let sz = sizes.get(c);
    if (!sz || sz.gen !== sizeGen) {
      sz = { gen: sizeGen, w: c.clientWidth, h: c.clientHeight };
      sizes.set(c, sz);
    }
    const dpr = DPR();
    const w = Math.max(1, Math.round(sz.w * dpr));
    const h = Math.max(1, Math.round(sz.h * dpr));
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, sz.w, sz.h);
    return { ctx, w: sz.w, h: sz.h };
  }
  const css = getComputedStyle(document.documentElement);
  const COLOR = {
    up: css.getPropertyValue("--up").trim() || "#22c07a",
    down: css.getPropertyValue("--down").trim() || "#f25a5a",
    accent: css.getPropertyValue("--accent").trim() || "#4da3ff",
    warn: css.getPropertyValue("--warn").trim() || "#f0b429",
    muted: css.getPropertyValue("--muted").trim() || "#7c8a9b",
    line: css.getPropertyValue("--line").trim() || "#1f2a36",
  };
  function rgba(hex, a) {
    const n = parseInt(hex.replace("#", ""), 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + a + ")";
  }

  function drawSpark(canvas, q) {
    const { ctx, w, h } = prepCanvas(canvas);
    const { px } = historyTail(q, SPARK_POINTS);
    if (px.length < 2) return;
    let lo = Infinity, hi = -Infinity;
    for (const v of px) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (hi === lo) { hi += 1e-9; lo -= 1e-9; }
    const color = px[px.length - 1] >= px[0] ? COLOR.up : COLOR.down;
    const pad = 2;
    // Fewer points than the sparkline holds: stretch them once there are
    // enough to read (10 s), instead of drawing a squiggle at the right edge.
    const slots = Math.max(px.length, 40);
    const x = (i) => 1 + ((i + slots - px.length) / (slots - 1)) * (w - 2);
    const y = (v) => pad + (1 - (v - lo) / (hi - lo)) * (h - 2 * pad);
    ctx.beginPath();
    for (let i = 0; i < px.length; i++) i ? ctx.lineTo(x(i), y(px[i])) : ctx.moveTo(x(i), y(px[i]));
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.25;
    ctx.lineJoin = "round";
    ctx.stroke();
    ctx.lineTo(x(px.length - 1), h);
    ctx.lineTo(x(0), h);
    ctx.closePath();
    ctx.fillStyle = rgba(color, 0.12);
    ctx.fill();
  }

  function drawBig() {
    const canvas = el.bigChart;
    const { ctx, w, h } = prepCanvas(canvas);
    const q = selected && quotes.get(selected);
    const axisW = 64, padT = 8, padB = 18;
    const plotW = w - axisW, plotH = h - padT - padB;
    ctx.font = "11px " + css.getPropertyValue("--mono");
    ctx.textBaseline = "middle";
    if (!q || q.histLen < 2) {
      ctx.fillStyle = COLOR.muted;
      ctx.textAlign = "center";
      ctx.fillText(q ? "waiting for data…" : "select a symbol", w / 2, h / 2);
      return;
    }
    const { px, t } = historyTail(q, HISTORY_POINTS);
    let lo = Infinity, hi = -Infinity;
    for (const v of px) { if (v < lo) lo = v; if (v > hi) hi = v; }
    const dec = pxDec(q.sym);
    const minSpan = Math.pow(10, -dec) * 4;
    if (hi - lo < minSpan) { const mid = (hi + lo) / 2; hi = mid + minSpan / 2; lo = mid - minSpan / 2; }
    const span = hi - lo;
    hi += span * 0.08; lo -= span * 0.08;
    const tEnd = performance.now();
    // Time axis spans the history we have: 30 s at first, up to 2 minutes.
    const spanS = Math.min(HISTORY_POINTS * HISTORY_BUCKET_MS / 1000, Math.max(30, Math.ceil((tEnd - t[0]) / 30000) * 30));
    const tStart = tEnd - spanS * 1000;
    const x = (tt) => ((tt - tStart) / (tEnd - tStart)) * plotW;
    const y = (v) => padT + (1 - (v - lo) / (hi - lo)) * plotH;

    // grid + price axis
    ctx.strokeStyle = COLOR.line;
    ctx.lineWidth = 1;
    ctx.fillStyle = COLOR.muted;
    ctx.textAlign = "left";
    const f = fmt(dec);
    const lastY = y(px[px.length - 1]);
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(0, yy); ctx.lineTo(plotW, yy); ctx.stroke();
      if (Math.abs(yy - lastY) > 14) ctx.fillText(f.format(v), plotW + 6, yy);
    }
    // time axis: a tick every 30 s, labelled with seconds ago
    ctx.textAlign = "center";
    const step = spanS <= 30 ? 10 : 30;
    for (let s = 0; s <= spanS; s += step) {
      const xx = x(tEnd - s * 1000);
      ctx.fillText(s === 0 ? "now" : "−" + Math.round(s) + "s", Math.min(Math.max(xx, 16), plotW - 14), h - 7);
    }
    // first-price reference line
    if (q.first != null && q.first > lo && q.first < hi) {
      ctx.setLineDash([3, 4]);
      ctx.strokeStyle = rgba(COLOR.muted, 0.6);
      const yy = Math.round(y(q.first)) + 0.5;
      ctx.beginPath(); ctx.moveTo(0, yy); ctx.lineTo(plotW, yy); ctx.stroke();
      ctx.setLineDash([]);
    }
    const color = q.first == null || px[px.length - 1] >= q.first ? COLOR.up : COLOR.down;
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, 0, plotW, h);
    ctx.clip();
    ctx.beginPath();
    for (let i = 0; i < px.length; i++) i ? ctx.lineTo(x(t[i]), y(px[i])) : ctx.moveTo(x(t[i]), y(px[i]));
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.6;
    ctx.lineJoin = "round";
    ctx.stroke();
    ctx.lineTo(x(t[t.length - 1]), padT + plotH);
    ctx.lineTo(x(t[0]), padT + plotH);
    ctx.closePath();
    const g = ctx.createLinearGradient(0, padT, 0, padT + plotH);
    g.addColorStop(0, rgba(color, 0.25));
    g.addColorStop(1, rgba(color, 0));
    ctx.fillStyle = g;
    ctx.fill();
    ctx.restore();
    // last price tag on the axis
    const ly = y(px[px.length - 1]);
    ctx.fillStyle = color;
    ctx.fillRect(plotW + 2, ly - 8, axisW - 2, 16);
    ctx.fillStyle = "#06110b";
    ctx.textAlign = "left";
    ctx.fillText(f.format(px[px.length - 1]), plotW + 6, ly);
    let dlo = Infinity, dhi = -Infinity;
    for (const v of px) { if (v < dlo) dlo = v; if (v > dhi) dhi = v; }
    el.chartHilo.textContent = "H " + f.format(dhi) + "  L " + f.format(dlo);
    el.chartRange.textContent = "last " + (spanS >= 60 ? spanS / 60 + " min" : spanS + " s");
  }

  // Small multi-series chart; each series scaled to its own max.
  function drawSeries(canvas, series) {
    const { ctx, w, h } = prepCanvas(canvas);
    ctx.font = "10px " + css.getPropertyValue("--sans");
    ctx.textBaseline = "top";
    let lx = 0;
    for (const s of series) {
      const data = s.data;
      ctx.fillStyle = s.color;
      const label = s.label + " " + (data.length ? s.fmt(data[data.length - 1]) : "–");
      ctx.fillText(label, lx, 0);
      lx += ctx.measureText(label).width + 14;
      if (data.length < 2) continue;
      let max = 0;
      for (const v of data) if (isFinite(v) && v > max) max = v;
      if (max <= 0) max = 1;
      const top = 14, bot = h - 1;
      const slots = Math.max(data.length, 30);
      const x = (i) => w - ((data.length - 1 - i) / (slots - 1)) * w;
      const y = (v) => bot - (Math.max(0, v) / (max * 1.1)) * (bot - top);
      ctx.beginPath();
      let started = false;
      for (let i = 0; i < data.length; i++) {
        if (!isFinite(data[i])) { started = false; continue; }
        if (started) ctx.lineTo(x(i), y(data[i])); else { ctx.moveTo(x(i), y(data[i])); started = true; }
      }
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.3;
      ctx.stroke();
      if (s.fill) {
        ctx.lineTo(x(data.length - 1), bot);
        ctx.lineTo(x(0), bot);
        ctx.fillStyle = rgba(s.color, 0.12);
        ctx.fill();
      }
    }
  }

  // ---------------------------------------------------------------- table
  function buildRow(sym) {
    const m = meta.get(sym) || { name: "" };
    const tr = document.createElement("tr");
    tr.dataset.sym = sym;
    tr.tabIndex = 0; // rows are selectable from the keyboard (Enter / Space)
    tr.innerHTML =
      '<td class="c-sym"><span class="s"></span><span class="n"></span></td>' +
      '<td class="c-num px">–</td><td class="c-num c-opt3 chg">–</td><td class="c-num chgp">–</td>' +
      '<td class="c-num c-opt bid">–</td><td class="c-num c-opt ask">–</td>' +
      '<td class="c-num c-opt2 qty">–</td><td class="c-num c-opt2 seq">–</td><td class="c-num c-opt rate">–</td>' +
      '<td class="c-spark"><canvas class="spark"></canvas></td>' +
      '<td class="c-x"><button class="remove" type="button">×</button></td>';
    tr.querySelector(".s").textContent = sym;
    tr.querySelector(".n").textContent = m.name || "";
    tr.querySelector(".remove").setAttribute("aria-label", "Remove " + sym);
    tr.querySelector(".remove").title = "Remove " + sym;
    const q = tr.querySelectorAll("td");
    return {
      tr,
      cells: { px: q[1], chg: q[2], chgp: q[3], bid: q[4], ask: q[5], qty: q[6], seq: q[7], rate: q[8], spark: q[9].firstChild },
    };
  }

  // Rows far out of view are not painted: a 200-row watchlist would spend
  // the main thread painting and laying out rows nobody sees. A row within
  // a screen's height of the viewport is painted; one that comes closer is
  // repainted at once with its latest state.
  const nearView = new Set();
  const rowObserver = typeof IntersectionObserver === "function"
    ? new IntersectionObserver((entries) => {
        for (const e of entries) {
          const sym = e.target.dataset.sym;
          if (e.isIntersecting) { nearView.add(sym); dirty.add(sym); } else nearView.delete(sym);
        }
      }, { rootMargin: "100% 0px" })
    : null;

  function syncRows() {
    const want = new Set(selection);
    for (const tr of Array.from(el.rows.children)) {
      if (want.has(tr.dataset.sym)) continue;
      tr.remove();
      if (rowObserver) { rowObserver.unobserve(tr); nearView.delete(tr.dataset.sym); }
    }
    let prev = null;
    for (const sym of selection) {
      let q = quotes.get(sym);
      if (!q) { q = newQuote(sym); quotes.set(sym, q); }
      if (!q.row) {
        const built = buildRow(sym);
        q.row = built.tr;
        q.cells = built.cells;
        q.lastText = {};
        if (rowObserver) rowObserver.observe(q.row);
      }
      const next = prev ? prev.nextSibling : el.rows.firstChild;
      if (next !== q.row) el.rows.insertBefore(q.row, next);
      q.row.classList.toggle("selected", sym === selected);
      q.sparkDirty = true;
      dirty.add(sym);
      prev = q.row;
    }
    el.empty.hidden = selection.length > 0;
    el.count.textContent = String(selection.length);
    paintChartHeader();
  }

  function setText(q, key, text) {
    if (q.lastText[key] !== text) { q.lastText[key] = text; q.cells[key].textContent = text; }
  }

  function paintStale(q) {
    if (q.row.classList.contains("stale") !== q.stale) q.row.classList.toggle("stale", q.stale);
  }

  function paintRow(q, ts) {
    if (!q.row) return true;
    // A row repaints at most every ROW_MIN_MS: faster than anyone reads, and
    // it caps style/layout/paint work when every symbol ticks every frame.
    if (!resized && ts - q.paintedAt < ROW_MIN_MS) return false;
    q.paintedAt = ts;
    const sym = q.sym;
    setText(q, "px", fmtPx(sym, q.px));
    const [chg, chgp, sign] = fmtChg(sym, q);
    setText(q, "chg", chg);
    setText(q, "chgp", chgp);
    const cls = sign > 0 ? "up" : sign < 0 ? "down" : "";
    if (q.lastText.sign !== cls) {
      q.lastText.sign = cls;
      q.cells.chg.className = "c-num c-opt3 chg " + cls;
      q.cells.chgp.className = "c-num chgp " + cls;
    }
    setText(q, "bid", fmtPx(sym, q.bid));
    setText(q, "ask", fmtPx(sym, q.ask));
    setText(q, "qty", q.qty == null ? "–" : fmt(qtyDec(sym)).format(q.qty));
    setText(q, "seq", q.seq == null ? "–" : String(q.seq));
    setText(q, "rate", String(q.rate));
    if (q.flash) {
      q.flashDir = q.flash;
      q.flashUntil = ts + FLASH_MS;
      q.flash = 0;
    }
    const flashCls = q.flashDir && !q.stale && ts < q.flashUntil ? (q.flashDir > 0 ? "flash-up" : "flash-down") : "";
    if (q.lastText.flash !== flashCls) {
      q.lastText.flash = flashCls;
      q.cells.px.className = "c-num px " + flashCls;
    }
    if (flashCls) pendingFlash = true;
    paintStale(q);
    // Sparklines redraw at most every 250 ms each (their bucket size), and
    // at most SPARKS_PER_FRAME per frame, so 40 of them spread over frames.
    if (q.sparkDirty && sparkBudget > 0 && (resized || ts - q.sparkAt >= HISTORY_BUCKET_MS)) {
      sparkBudget--;
      q.sparkAt = ts;
      q.sparkDirty = false;
      drawSpark(q.cells.spark, q);
    }
    // Still dirty (repaint next frame) while a spark or a flash is pending.
    const done = !q.sparkDirty && !pendingFlash;
    pendingFlash = false;
    return done;
  }

  function paintChartHeader() {
    const q = selected && quotes.get(selected);
    el.chartSym.textContent = selected || "–";
    el.chartName.textContent = selected ? (meta.get(selected) || {}).name || "" : "";
    if (!q) { el.chartPx.textContent = "–"; el.chartChg.textContent = ""; el.chartHilo.textContent = ""; return; }
    el.chartPx.textContent = fmtPx(selected, q.px);
    const [chg, chgp, sign] = fmtChg(selected, q);
    el.chartChg.textContent = q.px == null ? "" : chg + " (" + chgp + ")";
    el.chartChg.className = "num " + (sign > 0 ? "up" : sign < 0 ? "down" : "");
  }

  // -------------------------------------------------------- render loop
  const SPARKS_PER_FRAME = 12;
  const ROW_MIN_MS = 50;
  const FLASH_MS = 400;
  let pendingFlash = false;
  let sparkBudget = 0;
  let lastBig = 0;
  let resized = true;
  function frame(ts) {
    requestAnimationFrame(frame);
    const t0 = performance.now();
    if (structureDirty) { structureDirty = false; syncRows(); }
    sparkBudget = resized ? Infinity : SPARKS_PER_FRAME;
    const pending = [];
    for (const sym of dirty) {
      const q = quotes.get(sym);
      if (rowObserver && !nearView.has(sym)) {
        // Painted when it comes near; only its stale mark (the row's state,
        // not its text) is kept right meanwhile.
        if (q && q.row) paintStale(q);
        continue;
      }
      if (q && !paintRow(q, ts)) pending.push(sym);
    }
    dirty.clear();
    for (const s of pending) dirty.add(s);
    if (selected && (ts - lastBig >= 100 || resized)) {
      lastBig = ts;
      paintChartHeader();
      drawBig();
    }
    if (sideDirty || resized) { sideDirty = false; paintSide(); }
    resized = false;
    const dt = performance.now() - t0;
    debug.frames++;
    debug.renderMs = debug.renderMs * 0.95 + dt * 0.05;
    if (dt > debug.maxRenderMs) debug.maxRenderMs = dt;
  }
  window.addEventListener("resize", () => { resized = true; sizeGen++; for (const q of quotes.values()) q.sparkDirty = true; for (const s of selection) dirty.add(s); });

  // ------------------------------------------- once-a-second bookkeeping
  const e2eSeries = { p50: [], p99: [] };
  const srvSeries = { msgs: [], p99: [] };
  let e2e = { p50: null, p99: null, n: 0 };
  let srv = null;
  function pushSeries(arr, v) { arr.push(v); if (arr.length > SERIES_POINTS) arr.shift(); }

  function percentiles() {
    const cutoff = performance.now() - LATENCY_WINDOW_MS;
    const vals = [];
    for (let i = 0; i < lat.len; i++) {
      const j = (lat.head - 1 - i + LATENCY_MAX_SAMPLES) % LATENCY_MAX_SAMPLES;
      if (lat.t[j] < cutoff) break;
      vals.push(lat.v[j]);
    }
    if (!vals.length) return { p50: null, p99: null, n: 0 };
    const a = Float64Array.from(vals).sort();
    const at = (p) => a[Math.min(a.length - 1, Math.floor(p * a.length))];
    return { p50: at(0.5), p99: at(0.99), n: a.length };
  }

  function everySecond() {
    clientRate = clientMsgs; clientMsgs = 0;
    if (!calm && calmChoice === null) {
      busySeconds = clientRate > AUTO_CALM_RATE ? busySeconds + 1 : 0;
      if (busySeconds >= AUTO_CALM_SECONDS) {
        busySeconds = 0;
        conn.setCalm(true, false);
        toast("calm view on: " + fmtCount(clientRate) + " msgs/s is more than a page can show; untick calm for every tick");
      }
    }
    for (const q of quotes.values()) {
      if (q.rate !== q.count) { q.rate = q.count; dirty.add(q.sym); }
      q.count = 0;
    }
    e2e = percentiles();
    pushSeries(e2eSeries.p50, e2e.p50 == null ? NaN : e2e.p50);
    pushSeries(e2eSeries.p99, e2e.p99 == null ? NaN : e2e.p99);
    el.clock.textContent = new Date().toLocaleTimeString("en-GB", { hour12: false });
    sideDirty = true;
    pollStats();
  }

  let statsInFlight = false;
  function pollStats() {
    if (statsInFlight || document.hidden) return;
    statsInFlight = true;
    fetch("/api/stats", { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : null))
      .then((s) => { srv = s; })
      .catch(() => { srv = null; })
      .finally(() => {
        statsInFlight = false;
        const w = srv && srv.latency_us && srv.latency_us.window_10s;
        pushSeries(srvSeries.msgs, srv && srv.rates ? srv.rates.msgs_per_s : NaN);
        pushSeries(srvSeries.p99, w && w.count ? w.p99 : NaN);
        sideDirty = true;
      });
  }

  function paintSide() {
    el.clientRate.textContent = fmtCount(clientRate);
    el.rtt.textContent = rttUs == null ? "–" : fmtUs(rttUs);
    el.e2eP50.textContent = fmtUs(e2e.p50);
    el.e2eP99.textContent = fmtUs(e2e.p99);
    el.e2eN.textContent = fmtCount(e2e.n);
    el.clockOffset.textContent = clockOffsetUs == null ? "" :
      "Ping-estimated skew: " + (clockOffsetUs >= 0 ? "+" : "−") + fmtUs(Math.abs(clockOffsetUs)) + ".";
    drawSeries(el.e2eChart, [
      { label: "p50", data: e2eSeries.p50, color: COLOR.accent, fmt: fmtUs, fill: true },
      { label: "p99", data: e2eSeries.p99, color: COLOR.warn, fmt: fmtUs },
    ]);
    const w = srv && srv.latency_us && srv.latency_us.window_10s;
    el.srvConns.textContent = srv ? fmtCount(srv.connections) : "–";
    el.srvMsgs.textContent = srv && srv.rates ? fmtCount(srv.rates.msgs_per_s) : "–";
    el.srvP50.textContent = w && w.count ? fmtUs(w.p50) : "–";
    el.srvP99.textContent = w && w.count ? fmtUs(w.p99) : "–";
    el.srvUptime.textContent = srv && srv.uptime_s != null ? fmtUptime(srv.uptime_s) : "offline";
    drawSeries(el.srvChart, [
      { label: "msgs/s", data: srvSeries.msgs, color: COLOR.accent, fmt: fmtCount, fill: true },
      { label: "p99", data: srvSeries.p99, color: COLOR.warn, fmt: fmtUs },
    ]);
  }

  let toastTimer = 0;
  function toast(text) {
    el.toast.textContent = text;
    el.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.toast.hidden = true; }, 4000);
  }

  // --------------------------------------------------------------- picker
  let matches = [];
  let active = -1;
  function searchUniverse(qs) {
    const q = qs.trim().toUpperCase();
    if (!q) return universe.slice(0, 50);
    const scored = [];
    for (const i of universe) {
      const s = i.sym.toUpperCase(), n = (i.name || "").toUpperCase(), compact = s.replace(/[^A-Z0-9]/g, "");
      let score = -1;
      if (s === q || compact === q) score = 0;
      else if (s.startsWith(q) || compact.startsWith(q)) score = 1;
      else if (s.includes(q)) score = 2;
      else if (n.includes(q) || i.class.toUpperCase() === q) score = 3;
      if (score >= 0) scored.push([score, i]);
    }
    scored.sort((a, b) => a[0] - b[0] || a[1].sym.localeCompare(b[1].sym));
    return scored.slice(0, 50).map((x) => x[1]);
  }
  function renderResults() {
    el.results.textContent = "";
    if (!matches.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "no matching symbol";
      el.results.appendChild(li);
    }
    matches.forEach((i, idx) => {
      const li = document.createElement("li");
      li.setAttribute("role", "option");
      li.dataset.sym = i.sym;
      li.id = "opt-" + idx;
      if (selection.includes(i.sym)) li.classList.add("added");
      li.setAttribute("aria-selected", idx === active ? "true" : "false");
      const s = document.createElement("span"); s.className = "s"; s.textContent = i.sym;
      const n = document.createElement("span"); n.className = "n"; n.textContent = i.name || "";
      const b = document.createElement("span"); b.className = "badge " + i.class; b.textContent = i.class;
      li.append(s, n, b);
      el.results.appendChild(li);
    });
    el.results.hidden = false;
    el.search.setAttribute("aria-expanded", "true");
    if (active >= 0) el.search.setAttribute("aria-activedescendant", "opt-" + active);
  }
  function openResults() { matches = searchUniverse(el.search.value); active = matches.length ? 0 : -1; renderResults(); }
  function closeResults() { el.results.hidden = true; el.search.setAttribute("aria-expanded", "false"); el.search.removeAttribute("aria-activedescendant"); }
  function choose(sym) {
    addSymbols([sym]);
    select(sym);
    el.search.value = "";
    closeResults();
  }
  el.search.addEventListener("input", openResults);
  el.search.addEventListener("focus", openResults);
  el.search.addEventListener("blur", () => setTimeout(closeResults, 150));
  el.search.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (!matches.length) return;
      active = (active + (e.key === "ArrowDown" ? 1 : -1) + matches.length) % matches.length;
      renderResults();
      const a = el.results.children[active];
      if (a) a.scrollIntoView({ block: "nearest" });
    } else if (e.key === "Enter") {
      e.preventDefault();
      if (active >= 0 && matches[active]) choose(matches[active].sym);
    } else if (e.key === "Escape") {
      closeResults();
      el.search.blur();
    }
  });
  el.results.addEventListener("mousedown", (e) => {
    const li = e.target.closest("li[data-sym]");
    if (li) { e.preventDefault(); choose(li.dataset.sym); }
  });
  el.rows.addEventListener("click", (e) => {
    const rm = e.target.closest("button.remove");
    const tr = e.target.closest("tr[data-sym]");
    if (!tr) return;
    if (rm) removeSymbols([tr.dataset.sym]);
    else select(tr.dataset.sym);
  });
  el.rows.addEventListener("keydown", (e) => {
    const tr = e.target.closest("tr[data-sym]");
    if (!tr || e.target !== tr) return;
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(tr.dataset.sym); }
    else if (e.key === "Delete" || e.key === "Backspace") { e.preventDefault(); removeSymbols([tr.dataset.sym]); }
  });
  el.addAll.addEventListener("click", () => addSymbols(universe.map((i) => i.sym)));
  el.clearAll.addEventListener("click", () => removeSymbols(selection.slice()));
  el.retry.addEventListener("click", () => conn.retryNow());
  el.calm.addEventListener("change", () => conn.setCalm(el.calm.checked, true));

  // ----------------------------------------------------------------- boot
  function loadUniverse(attempt) {
    return fetch(withToken("/api/symbols"), { cache: "no-store" })
      .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .catch(() => new Promise((res) => setTimeout(res, Math.min(5000, 500 * Math.pow(2, attempt)))).then(() => loadUniverse(attempt + 1)));
  }

  // Test and debugging hook: read-only view of what the page has seen.
  window.__tickwire = {
    state: () => conn.state,
    transport: () => conn.transport,
    calm: () => calm,
    seen: () => JSON.parse(JSON.stringify(debug.seen)),
    sseOpens: () => debug.sseOpens,
    selection: () => selection.slice(),
    universe: () => universe.map((i) => i.sym),
    subscribed: () => Array.from(acked).sort(),
    received: () => Object.assign({}, debug.received),
    history: (sym) => (quotes.get(sym) ? quotes.get(sym).histLen : 0),
    connects: () => debug.connects,
    resyncs: () => debug.resyncs,
    serverErrors: () => Object.assign({}, debug.serverErrors),
    perf: () => ({ now: performance.now(), frames: debug.frames, avgRenderMs: debug.renderMs, maxRenderMs: debug.maxRenderMs,
                   longTasks: debug.longTasks, maxLongTaskMs: debug.maxLongTaskMs }),
    resetPerf: () => { debug.maxRenderMs = 0; debug.frames = 0; debug.longTasks = 0; debug.maxLongTaskMs = 0; },
  };

  loadUniverse(0).then((data) => {
    universe = (data && data.symbols) || [];
    for (const i of universe) meta.set(i.sym, i);
    loadSelection();
    for (const s of selection) quotes.set(s, newQuote(s));
    saveSelection();
    structureDirty = true;
    conn.paintViewRate();
    conn.connect();
    setInterval(everySecond, 1000);
    everySecond();
    requestAnimationFrame(frame);
  });
})();
