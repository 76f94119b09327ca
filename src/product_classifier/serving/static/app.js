// Product classifier web page: pick or drop photos, send them to POST v1/predict/batch,
// show one row per photo, export the rows as CSV or tab-separated text.
// Plain ES2020, no dependencies, no build step. User-supplied text (file names, API
// messages) only ever goes into textContent, never into HTML.
"use strict";

(() => {
  // The service accepts 64 files and 64 MiB per batch request; stay well below both.
  const MAX_FILES_PER_REQUEST = 16;
  const MAX_BYTES_PER_REQUEST = 24 * 1024 * 1024;
  const MAX_RETRIES = 3; // on 503 (overloaded / not ready), honouring Retry-After
  const API_BATCH = "v1/predict/batch"; // relative: works behind a path prefix too
  const API_READY = "ready";
  const API_CATEGORIES = "v1/categories";
  // The key lives in sessionStorage: this tab only, gone when it closes, never in a cookie
  // (the browser would send a cookie by itself) nor in localStorage (kept on disk for good).
  const KEY_STORAGE = "productClassifier.apiKey";
  const KEY_HEADER = "X-API-Key";
  const KEY_PATTERN = /^[\x21-\x7e]+$/; // printable ASCII: what an HTTP header can carry

  const $ = (id) => document.getElementById(id);
  const dropZone = $("drop-zone");
  const fileInput = $("file-input");
  const statusEl = $("status");
  const summaryEl = $("summary");
  const body = $("results-body");
  const copyButton = $("copy-button");
  const csvButton = $("csv-button");
  const clearButton = $("clear-button");
  const onlyReview = $("only-review");
  const serviceStatus = $("service-status");
  const modelVersionEl = $("model-version");
  const categoriesEl = $("categories");
  const keyPanel = $("key-panel");
  const keyForm = $("key-form");
  const keyInput = $("api-key");
  const keyStatus = $("api-key-status");
  const forgetKeyButton = $("forget-key");

  /** @type {{id:number, file:File, url:string, state:string, result:any, error:any, row:HTMLElement}[]} */
  let items = [];
  let nextId = 1;
  let busy = 0;
  let modelVersion = "";

  // ---- service status ------------------------------------------------------------------

  async function checkService() {
    try {
      const response = await fetch(API_READY, { cache: "no-store" });
      const data = await response.json().catch(() => ({}));
      if (response.ok) {
        setModelVersion(data.model_version || "");
        serviceStatus.dataset.state = "ready";
        serviceStatus.textContent = data.model_version ? `Ready · model ${data.model_version}` : "Ready";
      } else {
        serviceStatus.dataset.state = "down";
        serviceStatus.textContent = "Service starting: " + errorText(data.error, response.status);
      }
    } catch (err) {
      serviceStatus.dataset.state = "down";
      serviceStatus.textContent = "Service unreachable";
    }
  }

  function setModelVersion(version) {
    if (!version || version === modelVersion) return;
    modelVersion = version;
    modelVersionEl.textContent = "Model " + version;
    loadCategories();
  }

  // The loaded model's own categories (a catalog model has the shop's, not Fashion-MNIST's).
  // Also how the page learns, before any upload, whether the service wants a key.
  async function loadCategories() {
    const headers = keyHeaders();
    if (headers === null) return;
    try {
      const response = await fetch(API_CATEGORIES, { cache: "no-store", headers });
      if (response.status === 401) {
        keyRefused();
        return;
      }
      if (!response.ok) return;
      keyAccepted();
      const data = await response.json();
      const names = (data.categories || []).map((c) => c.category);
      categoriesEl.textContent = names.length ? "Categories: " + names.join(", ") : "";
      categoriesEl.dataset.count = String(names.length);
    } catch (err) {
      categoriesEl.textContent = "";
    }
  }

  // ---- API key -------------------------------------------------------------------------

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (err) {
      return ""; // storage disabled: the key lives in the field only
    }
  }

  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (err) {
      // storage disabled: nothing to keep
    }
  }

  function setKeyStatus(state, text) {
    keyStatus.dataset.state = state;
    keyStatus.textContent = text;
    keyInput.setAttribute("aria-invalid", String(state === "error"));
  }

  // The headers for a /v1 request, or null when the typed key cannot be sent.
  function keyHeaders() {
    const key = keyInput.value.trim();
    if (!key) return {};
    if (!KEY_PATTERN.test(key)) {
      keyPanel.open = true;
      setKeyStatus("error", "An API key has no spaces and only plain letters, digits and symbols.");
      return null;
    }
    return { [KEY_HEADER]: key };
  }

  // The message a photo's row and the key field show after a 401 (never the key itself).
  function keyProblem() {
    return keyInput.value.trim()
      ? "The service did not accept this API key: check it, then add the photos again."
      : "This service needs an API key: enter it under \"API key\", then add the photos again.";
  }

  function keyRefused() {
    keyPanel.open = true;
    setKeyStatus("error", keyProblem());
  }

  function keyAccepted() {
    if (keyInput.value.trim()) setKeyStatus("ok", "Key accepted.");
    else setKeyStatus("", "");
  }

  keyInput.value = storedKey();
  if (keyInput.value) keyPanel.open = true;
  keyInput.addEventListener("input", () => {
    storeKey(keyInput.value.trim());
    setKeyStatus("", "");
  });
  keyInput.addEventListener("change", loadCategories); // check the new key right away
  keyForm.addEventListener("submit", (event) => {
    event.preventDefault(); // Enter in the field: check the key, never navigate
    loadCategories();
  });
  forgetKeyButton.addEventListener("click", () => {
    keyInput.value = "";
    storeKey("");
    setKeyStatus("", "Key forgotten.");
    keyInput.focus();
  });

  // ---- choosing files ------------------------------------------------------------------

  function openPicker() {
    fileInput.click();
  }

  dropZone.addEventListener("click", openPicker);
  dropZone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault(); // Space would scroll the page
      openPicker();
    }
  });
  fileInput.addEventListener("change", () => {
    addFiles(Array.from(fileInput.files || []));
    fileInput.value = ""; // choosing the same file again must fire "change" again
  });

  ["dragenter", "dragover"].forEach((type) =>
    dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    })
  );
  ["dragleave", "dragend"].forEach((type) =>
    dropZone.addEventListener(type, () => dropZone.classList.remove("dragging"))
  );
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    const files = Array.from((event.dataTransfer && event.dataTransfer.files) || []);
    addFiles(files.filter((f) => f.size > 0 || f.type !== "")); // folders arrive as empty entries
  });
  // A photo dropped next to the zone must not replace the page with the image.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // ---- sending -------------------------------------------------------------------------

  function addFiles(files) {
    if (files.length === 0) return;
    const added = files.map((file) => {
      const item = {
        id: nextId++,
        file,
        url: URL.createObjectURL(file),
        state: "pending",
        result: null,
        error: null,
        row: null,
      };
      item.row = buildRow(item);
      body.appendChild(item.row);
      return item;
    });
    items = items.concat(added);
    announce(`Classifying ${added.length} photo${added.length === 1 ? "" : "s"}…`);
    refresh();
    classify(added);
  }

  function chunk(list) {
    const chunks = [];
    let current = [];
    let bytes = 0;
    for (const item of list) {
      const size = item.file.size;
      if (current.length && (current.length >= MAX_FILES_PER_REQUEST || bytes + size > MAX_BYTES_PER_REQUEST)) {
        chunks.push(current);
        current = [];
        bytes = 0;
      }
      current.push(item);
      bytes += size;
    }
    if (current.length) chunks.push(current);
    return chunks;
  }

  async function classify(list) {
    busy += 1;
    refresh();
    try {
      for (const group of chunk(list)) {
        await sendGroup(group);
        refresh();
      }
    } finally {
      busy -= 1;
      refresh();
      if (busy === 0) announce(summaryText());
    }
  }

  async function sendGroup(group) {
    const form = new FormData();
    for (const item of group) form.append("files", item.file, item.file.name);
    const headers = keyHeaders();
    if (headers === null) {
      failGroup(group, { code: "invalid_api_key", message: keyStatus.textContent });
      return;
    }
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await fetch(API_BATCH, { method: "POST", body: form, headers });
      } catch (err) {
        failGroup(group, { code: "network_error", message: "the service could not be reached" });
        return;
      }
      const data = await response.json().catch(() => null);
      if (response.status === 401) {
        keyRefused();
        announce(keyProblem());
        failGroup(group, { code: "unauthorized", message: keyProblem() });
        return;
      }
      if (response.ok && data && Array.isArray(data.results)) {
        keyAccepted();
        setModelVersion(data.model_version);
        group.forEach((item, i) => settle(item, data.results[i]));
        return;
      }
      if (response.status === 503 && attempt < MAX_RETRIES) {
        const wait = Number(response.headers.get("Retry-After")) || 1;
        announce(`The service is busy; retrying in ${wait} s…`);
        await new Promise((resolve) => setTimeout(resolve, wait * 1000));
        continue;
      }
      const error = (data && data.error) || {
        code: `http_${response.status}`,
        message: `the service answered ${response.status} ${response.statusText}`.trim(),
      };
      failGroup(group, error);
      return;
    }
  }

  function settle(item, result) {
    if (!result) {
      failGroup([item], { code: "missing_result", message: "the service sent no result for this file" });
    } else if (result.error) {
      item.state = "error";
      item.error = result.error;
    } else {
      item.state = "done";
      item.result = result;
    }
    updateRow(item);
  }

  function failGroup(group, error) {
    for (const item of group) {
      item.state = "error";
      item.error = error;
      updateRow(item);
    }
  }

  // ---- rendering -----------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function percent(p) {
    return `${(100 * p).toFixed(1)}%`;
  }

  function buildRow(item) {
    const row = el("tr", "row");
    row.dataset.filename = item.file.name;
    const thumbCell = el("td", "thumb-cell");
    const img = el("img", "thumb");
    img.src = item.url;
    img.alt = ""; // decorative: the file name is in the next cell
    img.width = 56;
    img.height = 56;
    // Not an image the browser can show: a neutral tile instead of the broken-image icon.
    img.addEventListener("error", () => img.replaceWith(el("div", "thumb broken")));
    thumbCell.appendChild(img);
    const nameCell = el("td", "file-name", item.file.name);
    nameCell.title = item.file.name;
    row.append(thumbCell, nameCell);
    const pending = el("td", "pending", "Classifying…");
    pending.colSpan = 4;
    row.appendChild(pending);
    row.dataset.state = "pending";
    return row;
  }

  function updateRow(item) {
    const row = item.row;
    while (row.children.length > 2) row.removeChild(row.lastChild);
    row.dataset.state = item.state;
    if (item.state === "error") {
      const cell = el("td", "error-cell");
      cell.colSpan = 4;
      cell.appendChild(el("span", "badge badge-error", "Error"));
      cell.appendChild(el("span", "error-message", errorText(item.error)));
      row.dataset.errorCode = item.error.code || "";
      row.appendChild(cell);
      return;
    }
    const r = item.result;
    row.dataset.category = r.category;
    row.dataset.classId = String(r.class_id);
    row.dataset.confidence = String(r.confidence);
    row.dataset.needsReview = String(r.needs_review);

    row.appendChild(el("td", "category", r.category));

    const confCell = el("td", "confidence");
    const bar = el("div", "bar");
    bar.setAttribute("aria-hidden", "true");
    const fill = el("div", r.needs_review ? "bar-fill low" : "bar-fill");
    fill.style.width = percent(r.confidence);
    bar.appendChild(fill);
    confCell.append(bar, el("span", "bar-label", percent(r.confidence)));
    row.appendChild(confCell);

    const topCell = el("td", "top-k");
    const list = el("ol", "top-list");
    for (const entry of r.top_k) {
      const li = el("li");
      li.append(el("span", "top-name", entry.category), el("span", "top-prob", percent(entry.probability)));
      list.appendChild(li);
    }
    topCell.appendChild(list);
    row.appendChild(topCell);

    const reviewCell = el("td", "review");
    // review_reason says why: out_of_scope (likely none of the categories) or low_confidence.
    const reviewText = r.review_reason === "out_of_scope"
      ? "Needs review: not a catalog item?"
      : "Needs review: unsure";
    reviewCell.appendChild(
      r.needs_review
        ? el("span", "badge badge-review", reviewText)
        : el("span", "badge badge-ok", "OK")
    );
    row.appendChild(reviewCell);
    applyFilter(item);
  }

  function errorText(error, status) {
    if (!error) return status ? `HTTP ${status}` : "unknown error";
    const message = error.message || "unknown error";
    return error.code ? `${message} (${error.code})` : message;
  }

  function applyFilter(item) {
    const hide = onlyReview.checked && item.state === "done" && !item.result.needs_review;
    item.row.hidden = hide;
  }

  onlyReview.addEventListener("change", () => {
    items.forEach(applyFilter);
    announce(onlyReview.checked ? "Showing only photos that need review or failed." : "Showing all photos.");
  });

  function counts() {
    const done = items.filter((i) => i.state === "done");
    return {
      total: items.length,
      done: done.length,
      review: done.filter((i) => i.result.needs_review).length,
      errors: items.filter((i) => i.state === "error").length,
      pending: items.filter((i) => i.state === "pending").length,
    };
  }

  function summaryText() {
    const c = counts();
    if (c.total === 0) return "No photos yet.";
    const parts = [`${c.done} of ${c.total} photo${c.total === 1 ? "" : "s"} classified`];
    parts.push(`${c.review} need${c.review === 1 ? "s" : ""} review`);
    if (c.errors) parts.push(`${c.errors} failed`);
    if (c.pending) parts.push(`${c.pending} in progress`);
    return parts.join(", ") + ".";
  }

  function refresh() {
    summaryEl.textContent = summaryText();
    const c = counts();
    const hasRows = c.done + c.errors > 0;
    copyButton.disabled = !hasRows;
    csvButton.disabled = !hasRows;
    clearButton.disabled = c.total === 0 || busy > 0;
    dropZone.setAttribute("aria-busy", String(busy > 0));
  }

  function announce(text) {
    statusEl.textContent = text;
  }

  // ---- export --------------------------------------------------------------------------

  const COLUMNS = [
    "filename", "category", "class_id", "confidence", "needs_review", "review_reason",
    "top1", "top1_probability", "top2", "top2_probability", "top3", "top3_probability",
    "error_code", "error_message", "model_version",
  ];

  function records() {
    return items
      .filter((i) => i.state !== "pending")
      .map((i) => {
        const rec = { filename: i.file.name, model_version: modelVersion };
        if (i.state === "error") {
          rec.error_code = i.error.code || "";
          rec.error_message = i.error.message || "";
          return rec;
        }
        const r = i.result;
        Object.assign(rec, {
          category: r.category,
          class_id: r.class_id,
          confidence: r.confidence.toFixed(6),
          needs_review: r.needs_review,
          review_reason: r.review_reason || "",
        });
        r.top_k.forEach((entry, k) => {
          rec[`top${k + 1}`] = entry.category;
          rec[`top${k + 1}_probability`] = entry.probability.toFixed(6);
        });
        return rec;
      });
  }

  // Cells starting with = + - @ are formulas to a spreadsheet; a leading ' keeps them text.
  function safeText(value) {
    const text = value === undefined || value === null ? "" : String(value);
    return /^[=+\-@\t\r]/.test(text) && isNaN(Number(text)) ? `'${text}` : text;
  }

  function toCsv(rows) {
    const quote = (value) => {
      const text = safeText(value);
      return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
    };
    const lines = [COLUMNS.join(",")];
    for (const rec of rows) lines.push(COLUMNS.map((c) => quote(rec[c])).join(","));
    return lines.join("\r\n") + "\r\n";
  }

  function toTsv(rows) {
    const clean = (value) => safeText(value).replace(/[\t\r\n]+/g, " ");
    const lines = [COLUMNS.join("\t")];
    for (const rec of rows) lines.push(COLUMNS.map((c) => clean(rec[c])).join("\t"));
    return lines.join("\n") + "\n";
  }

  csvButton.addEventListener("click", () => {
    const rows = records();
    const blob = new Blob([toCsv(rows)], { type: "text/csv;charset=utf-8" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "product-classifier-results.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    announce(`Downloaded ${rows.length} row${rows.length === 1 ? "" : "s"} as CSV.`);
  });

  copyButton.addEventListener("click", async () => {
    const text = toTsv(records());
    try {
      // Only available in secure contexts (https or localhost).
      await navigator.clipboard.writeText(text);
    } catch (err) {
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      const ok = document.execCommand && document.execCommand("copy");
      area.remove();
      if (!ok) {
        announce("Copying is blocked by the browser; use Download CSV instead.");
        return;
      }
    }
    announce("Results copied: paste them into a spreadsheet.");
  });

  clearButton.addEventListener("click", () => {
    items.forEach((i) => URL.revokeObjectURL(i.url));
    items = [];
    body.textContent = "";
    refresh();
    announce("Results cleared.");
    dropZone.focus();
  });

  // Hooks for tests and for people who want the raw rows from the console.
  window.productClassifier = { records, toCsv, summaryText };

  refresh();
  checkService();
})();
