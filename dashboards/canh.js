// Canh dashboards: token, language, API calls, and small SVG charts. No framework, no build step.
// Every page loads this file first; `Canh.start(render)` calls `render` now and at each refresh.
"use strict";

// Errors are collected where a test (and a person with the console open) can read them.
window.canhErrors = [];
window.addEventListener("error", (e) => {
  window.canhErrors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || "error"));
}, true);
window.addEventListener("unhandledrejection", (e) => window.canhErrors.push(String(e.reason)));

const Canh = (() => {
  const TEXT = {
    en: {
      overview: "Overview", alerts: "Alerts", search: "Search", sensors: "Sensors", rules: "Rules",
      token: "API token", sign_in: "Sign in", sign_out: "Sign out", live: "Live refresh",
      range: "Time range", events_per_second: "Events per second by tenant and dataset",
      alerts_by_severity: "Alerts by severity", top_rules: "Top rules", top_talkers: "Top talkers (bytes)",
      status: "Status", level: "Level", rule: "Rule", group_by: "Group by", none: "none",
      time: "Time", sensor: "Sensor", tenant: "Tenant", source: "Source", destination: "Destination",
      actions: "Actions", acknowledge: "Acknowledge", assign: "Assign", escalate: "Escalate", close: "Close",
      assignee: "assignee", reason: "reason", events: "Events", query: "Query", dataset: "Dataset",
      run: "Search", summary: "Summary", last_heard: "Last heard", eps: "Events/s", drop: "Capture drop %",
      backlog: "Spool backlog (bytes)", dead_letters: "Dead letters", topic: "Topic", records: "Records",
      hits: "Hits", last_hit: "Last hit", no_data: "No data in this time range", national_only: "National centre only",
      alert_events: "Events behind alert", community: "Community ID", address: "Address", count: "Count",
      filter: "Filter", organizations: "Organizations", key: "Key",
      rule_group: "Rule group", matches: "Matching events", errors: "Errors", eval_time: "Evaluation time (group)",
      kafka_lag: "Kafka lag (records not yet stored)", kafka_lag_total: "Records waiting in Kafka",
      kafka_error: "Kafka lag unavailable", group: "consumer group", partition: "Partition",
      committed: "Committed offset", high_watermark: "Latest offset",
    },
    vi: {
      overview: "Tổng quan", alerts: "Cảnh báo", search: "Tìm kiếm", sensors: "Cảm biến", rules: "Luật",
      token: "Mã truy cập API", sign_in: "Đăng nhập", sign_out: "Đăng xuất", live: "Tự động làm mới",
      range: "Khoảng thời gian", events_per_second: "Sự kiện mỗi giây theo đơn vị và loại dữ liệu",
      alerts_by_severity: "Cảnh báo theo mức độ", top_rules: "Luật kích hoạt nhiều nhất",
      top_talkers: "Địa chỉ trao đổi nhiều nhất (byte)", status: "Trạng thái", level: "Mức độ", rule: "Luật",
      group_by: "Nhóm theo", none: "không", time: "Thời gian", sensor: "Cảm biến", tenant: "Đơn vị",
      source: "Nguồn", destination: "Đích", actions: "Thao tác", acknowledge: "Xác nhận", assign: "Giao",
      escalate: "Chuyển cấp", close: "Đóng", assignee: "người xử lý", reason: "lý do", events: "Sự kiện",
      query: "Truy vấn", dataset: "Loại dữ liệu", run: "Tìm", summary: "Tóm tắt", last_heard: "Lần cuối nhận",
      eps: "Sự kiện/giây", drop: "Tỷ lệ mất gói %", backlog: "Hàng đợi (byte)", dead_letters: "Bản ghi lỗi",
      topic: "Chủ đề", records: "Bản ghi", hits: "Số lần", last_hit: "Lần cuối", no_data: "Không có dữ liệu trong khoảng thời gian này",
      national_only: "Chỉ dành cho trung tâm quốc gia", alert_events: "Sự kiện của cảnh báo",
      community: "Community ID", address: "Địa chỉ", count: "Số lượng", filter: "Lọc", organizations: "Đơn vị",
      key: "Khóa",
      rule_group: "Nhóm luật", matches: "Sự kiện khớp", errors: "Lỗi", eval_time: "Thời gian đánh giá (nhóm)",
      kafka_lag: "Độ trễ Kafka (bản ghi chưa lưu)", kafka_lag_total: "Bản ghi đang chờ trong Kafka",
      kafka_error: "Không đo được độ trễ Kafka", group: "nhóm tiêu thụ", partition: "Phân vùng",
      committed: "Offset đã xác nhận", high_watermark: "Offset mới nhất",
    },
  };
  let lang = localStorage.getItem("canh-lang") || "vi";
  const t = (key) => (TEXT[lang] && TEXT[lang][key]) || TEXT.en[key] || key;

  const params = new URLSearchParams(location.search);
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null) node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  };

  function translate() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  }

  function rangeQuery() {
    const q = new URLSearchParams();
    for (const k of ["from", "to"]) if (params.get(k)) q.set(k, params.get(k));
    const sel = document.getElementById("range");
    if (!q.has("from")) q.set("last", (sel && sel.value) || params.get("last") || "24h");
    return q;
  }

  function showError(message) {
    const box = document.getElementById("error");
    if (box) { box.textContent = message; box.hidden = !message; }
  }

  async function api(path, options) {
    const token = sessionStorage.getItem("canh-token");
    const response = await fetch(path, Object.assign({}, options, {
      headers: Object.assign({ Authorization: "Bearer " + token, "Content-Type": "application/json" }, (options || {}).headers),
    }));
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) { sessionStorage.removeItem("canh-token"); showLogin(); }
    if (!response.ok) { const err = new Error(body.error || response.statusText); err.status = response.status; throw err; }
    return body;
  }

  function showLogin() {
    const box = document.getElementById("login");
    box.hidden = false;
    document.getElementById("main").hidden = true;
  }

  const PAGES = ["overview", "alerts", "search", "sensors", "rules"];
  function header() {
    const nav = el("nav", {});
    for (const p of PAGES) nav.append(el("a", { href: p + ".html", "data-i18n": p, class: location.pathname.endsWith(p + ".html") ? "here" : "" }));
    const langs = el("span", { class: "lang" },
      el("button", { id: "lang-vi", onclick: () => setLang("vi") }, "VI"),
      el("button", { id: "lang-en", onclick: () => setLang("en") }, "EN"));
    const range = el("select", { id: "range", onchange: () => refresh() });
    for (const r of ["1h", "24h", "7days", "30days"]) range.append(el("option", { value: r }, r));
    range.value = params.get("last") || "24h";
    const live = el("input", { type: "checkbox", id: "live", checked: "checked" });
    nav.append(el("span", { class: "tools" }, el("label", { "data-i18n": "range" }), range,
      el("label", {}, live, el("span", { "data-i18n": "live" })), langs,
      el("button", { id: "sign-out", onclick: () => { sessionStorage.removeItem("canh-token"); location.reload(); }, "data-i18n": "sign_out" })));
    document.body.prepend(nav);
    const login = el("form", { id: "login", hidden: "hidden", onsubmit: (e) => {
      e.preventDefault();
      sessionStorage.setItem("canh-token", document.getElementById("token").value.trim());
      location.reload();
    } }, el("label", { for: "token", "data-i18n": "token" }), el("input", { id: "token", type: "password", autocomplete: "off" }),
      el("button", { type: "submit", "data-i18n": "sign_in" }));
    nav.after(login);
    login.after(el("div", { id: "error", class: "error", hidden: "hidden" }));
  }

  function setLang(l) { lang = l; localStorage.setItem("canh-lang", l); translate(); refresh(); }

  let render = null;
  let renders = 0;
  async function refresh() {
    if (!render || !sessionStorage.getItem("canh-token")) return;
    try {
      await render();
      showError("");
      renders += 1;
      document.body.dataset.renders = String(renders);
    } catch (err) {
      if (err.status !== 401) showError(err.message);
      document.body.dataset.failed = err.message;
    }
    translate();
  }

  function start(fn) {
    render = fn;
    header();
    translate();
    if (!sessionStorage.getItem("canh-token")) { showLogin(); return; }
    refresh();
    setInterval(() => { if (document.getElementById("live").checked) refresh(); }, 15000);
  }

  // ---- formatting
  const time = (ns) => (ns ? new Date(Number(ns) / 1e6).toISOString().replace("T", " ").slice(0, 19) : "");
  const num = (x, digits) => {
    if (x === null || x === undefined) return "";
    const n = Number(x);
    const locale = lang === "vi" ? "vi-VN" : "en-US";
    // Small rates (events per second over a long bucket) keep two significant digits.
    if (n !== 0 && Math.abs(n) < 1) return n.toLocaleString(locale, { maximumSignificantDigits: 2 });
    return n.toLocaleString(locale, { maximumFractionDigits: digits || 0 });
  };

  function table(container, columns, rows) {
    container.textContent = "";
    if (!rows.length) { container.append(el("p", { class: "empty", "data-i18n": "no_data" }, t("no_data"))); return; }
    const head = el("tr", {}, ...columns.map((c) => el("th", { "data-i18n": c.label }, t(c.label))));
    const body = rows.map((r) => el("tr", {}, ...columns.map((c) => {
      const v = c.cell ? c.cell(r) : r[c.key];
      return el("td", {}, v instanceof Node ? v : (v === undefined || v === null ? "" : String(v)));
    })));
    container.append(el("table", {}, el("thead", {}, head), el("tbody", {}, ...body)));
  }

  // ---- charts (SVG). Each chart marks how many data points it drew in data-points.
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#9333ea", "#475569"];
  const LEVEL_COLORS = { critical: "#7f1d1d", high: "#dc2626", medium: "#d97706", low: "#2563eb", informational: "#64748b" };
  const svgEl = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // series: [{name, points: [[x, y], ...]}], x in seconds.
  function lineChart(container, series) {
    container.textContent = "";
    const points = series.reduce((n, s) => n + s.points.length, 0);
    container.dataset.points = String(points);
    if (!points) { container.append(el("p", { class: "empty" }, t("no_data"))); return; }
    const W = 640, H = 220, L = 56, B = 24;
    const xs = series.flatMap((s) => s.points.map((p) => p[0]));
    const ys = series.flatMap((s) => s.points.map((p) => p[1]));
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    if (x1 === x0) { x0 -= 60; x1 += 60; }
    const y1 = Math.max(...ys) || 1;
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - 8);
    const sy = (y) => H - B - (y / y1) * (H - B - 8);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
    svg.append(svgEl("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }));
    svg.append(svgEl("line", { x1: L, y1: 0, x2: L, y2: H - B, class: "axis" }));
    for (const f of [0, 0.5, 1]) {
      svg.append(svgEl("text", { x: L - 4, y: sy(y1 * f) + 4, "text-anchor": "end", class: "tick" }, num(y1 * f, 2)));
    }
    for (const x of [x0, x1]) svg.append(svgEl("text", { x: sx(x), y: H - 6, "text-anchor": x === x0 ? "start" : "end", class: "tick" }, time(x * 1e9).slice(5, 16)));
    series.forEach((s, i) => {
      const color = s.color || COLORS[i % COLORS.length];
      const sorted = s.points.slice().sort((a, b) => a[0] - b[0]);
      svg.append(svgEl("polyline", { points: sorted.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
      for (const p of sorted) svg.append(svgEl("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: color }));
    });
    container.append(svg);
    const legend = el("div", { class: "legend" });
    series.forEach((s, i) => legend.append(el("span", { style: `color:${s.color || COLORS[i % COLORS.length]}` }, "■ " + s.name)));
    container.append(legend);
  }

  // items: [{label, value, href?}]
  function barChart(container, items) {
    container.textContent = "";
    container.dataset.points = String(items.length);
    if (!items.length) { container.append(el("p", { class: "empty" }, t("no_data"))); return; }
    const W = 640, row = 22, L = 200;
    const max = Math.max(...items.map((i) => Number(i.value))) || 1;
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${items.length * row + 4}`, class: "chart", role: "img" });
    items.forEach((item, i) => {
      const y = i * row + 2;
      const label = svgEl("text", { x: L - 6, y: y + 15, "text-anchor": "end", class: "label" }, String(item.label).slice(0, 30));
      if (item.href) {
        const a = svgEl("a", { href: item.href, class: "bar-link" });
        a.append(label);
        svg.append(a);
      } else svg.append(label);
      const w = Math.max(1, (Number(item.value) / max) * (W - L - 70));
      svg.append(svgEl("rect", { x: L, y, width: w, height: row - 6, fill: item.color || COLORS[0], rx: 2 }));
      svg.append(svgEl("text", { x: L + w + 4, y: y + 14, class: "tick" }, num(item.value)));
    });
    container.append(svg);
  }

  return { t, el, api, start, refresh, rangeQuery, params, table, lineChart, barChart, time, num, LEVEL_COLORS, showError };
})();
