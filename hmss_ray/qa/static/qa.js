// hmss-ray QA page: MR, sCT (CT, sCT - CT) in three planes with NiiVue, HU window presets, the
// spread overlay, the flags and metrics. With window.HMSS_QA (a predict output folder's
// qa-data.js) it shows that study; without it (GET /qa on the endpoint) a dropped or chosen MR is
// sent to POST v1/synthesize and its sCT shown and offered for download.
"use strict";
(function () {
  const PRESETS = { soft: [40, 400], bone: [400, 1800], lung: [-600, 1500] }; // level, width
  const HU_ROLES = ["sct", "ct"];
  const TITLES = { mr: "MR", sct: "sCT", ct: "CT", diff: "sCT - CT (HU)" };
  const NV = window.niivue;
  const qa = { viewers: {}, preset: "soft", ready: false, loads: 0 };
  window.hmssQA = qa; // for tests and the console

  function $(id) { return document.getElementById(id); }

  function toBase64(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }

  async function viewer(role) {
    if (qa.viewers[role]) return qa.viewers[role];
    const panel = document.createElement("div");
    panel.className = "panel";
    panel.id = "panel-" + role;
    panel.innerHTML = "<h2></h2><canvas></canvas>";
    panel.querySelector("h2").textContent = TITLES[role];
    const order = ["mr", "sct", "ct", "diff"];
    const after = order.slice(order.indexOf(role) + 1).map((r) => $("panel-" + r)).find(Boolean);
    $("viewers").insertBefore(panel, after || null);
    const nv = new NV.Niivue({
      backColor: [0, 0, 0, 1], show3Dcrosshair: false, isColorbar: false,
      multiplanarShowRender: 0, multiplanarLayout: 3, dragAndDropEnabled: false,
      isResizeCanvas: true, crosshairWidth: 0.5, crosshairColor: [1, 0, 0, 0.6],
    });
    await nv.attachToCanvas(panel.querySelector("canvas"));
    nv.setSliceType(nv.sliceTypeMultiplanar);
    qa.viewers[role] = nv;
    const all = Object.values(qa.viewers);
    all.forEach((v) => v.broadcastTo(all.filter((o) => o !== v), { "2d": true, "3d": false }));
    return nv;
  }

  // one volume (base64 of a .nii.gz / .mha / .nrrd) into the viewer of its role
  async function show(role, base64, name) {
    const nv = await viewer(role);
    const options = { base64: base64, name: name, colormap: "gray" };
    if (role === "diff") {  // blue (sCT below the CT) - white (equal) - red (above), +-300 HU
      nv.addColormap("hmss_diff", { R: [0, 255, 255], G: [0, 255, 0], B: [255, 255, 0],
        A: [255, 255, 255], I: [0, 128, 255] });
      Object.assign(options, { colormap: "hmss_diff", cal_min: -300, cal_max: 300 });
    }
    const image = await NV.NVImage.loadFromBase64(options);
    while (nv.volumes.length) nv.removeVolume(nv.volumes[0]);
    nv.addVolume(image);
    if (HU_ROLES.includes(role)) window_(nv, qa.preset);
    qa.loads += 1;
    return nv;
  }

  async function overlaySpread(base64) {
    const nv = qa.viewers.sct;
    const image = await NV.NVImage.loadFromBase64({
      base64: base64, name: "spread.nii.gz", colormap: "warm", opacity: 0,
      cal_min: 20, cal_max: 150,
    });
    nv.addVolume(image);
    qa.spread = image;
    $("spread").disabled = false;
  }

  function window_(nv, preset) {
    const [level, width] = PRESETS[preset];
    const image = nv.volumes[0];
    image.cal_min = level - width / 2;
    image.cal_max = level + width / 2;
    nv.updateGLVolume();
  }

  function setPreset(preset) {
    qa.preset = preset;
    document.querySelectorAll("[data-preset]").forEach((b) => {
      b.classList.toggle("on", b.dataset.preset === preset);
    });
    HU_ROLES.forEach((r) => { if (qa.viewers[r] && qa.viewers[r].volumes.length) window_(qa.viewers[r], preset); });
  }

  function toggleSpread(on) {
    if (!qa.spread) return;
    qa.viewers.sct.setOpacity(1, on ? 0.6 : 0);
  }

  function showReport(report) {
    const flags = report.flags || [];
    $("flags").innerHTML = "";
    const none = report.flags === null ? "not checked by the endpoint (batch prediction's qa.json)"
      : "no flags";
    (flags.length ? flags : [none]).forEach((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      if (!flags.length) li.className = report.flags === null ? "unchecked" : "none";
      $("flags").appendChild(li);
    });
    $("metrics").innerHTML = "";
    Object.entries(report.values || {}).forEach(([key, value]) => {
      const row = $("metrics").insertRow();
      row.insertCell().textContent = key;
      row.insertCell().textContent = typeof value === "number" ? value.toPrecision(3) : value;
    });
  }

  // what the endpoint's answer says about the sCT: its X-QA-* / X-Spread-* headers, if any
  function answerReport(headers) {
    const values = { inference_ms: Number(headers.get("x-inference-time-ms")) };
    let flags = null; // not checked, unless the endpoint says
    headers.forEach((value, key) => {
      if (key === "x-qa-flags") flags = value.split(";").map((f) => f.trim()).filter(Boolean);
      else if (/^x-(qa|spread)-/.test(key)) values[key.slice(2)] = isNaN(value) ? value : Number(value);
    });
    return { values: values, flags: flags };
  }

  function say(text, error) {
    $("status").textContent = text;
    $("status").className = error ? "error" : "";
  }

  // the endpoint: an MR file -> POST v1/synthesize (relative to the page) -> the sCT
  async function synthesize(file) {
    $("download").classList.add("hidden");
    const bytes = await file.arrayBuffer();
    if (/\.(nii|nii\.gz|mha|nrrd)$/i.test(file.name)) await show("mr", toBase64(bytes), file.name);
    say("synthesising " + file.name + " ...");
    const headers = { "Content-Type": "application/octet-stream" };
    const token = $("token").value.trim();
    sessionStorage.setItem("hmss-token", token);
    if (token) headers.Authorization = "Bearer " + token;
    const url = location.pathname.replace(/\/qa\/?$/, "") + "/v1/synthesize?format=nifti";
    const response = await fetch(url, { method: "POST", body: bytes, headers: headers });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
      say("the endpoint answered " + response.status + ": " + detail, true);
      return;
    }
    const sct = await response.arrayBuffer();
    await show("sct", toBase64(sct), "sct.nii.gz");
    const model = response.headers.get("x-model-name") + " " + response.headers.get("x-model-version");
    $("model").textContent = "model " + model;
    say("sCT of " + file.name + " in " + response.headers.get("x-inference-time-ms") + " ms");
    showReport(answerReport(response.headers));
    const link = $("download");
    link.href = URL.createObjectURL(new Blob([sct], { type: "application/gzip" }));
    link.download = file.name.replace(/\.(nii\.gz|nii|mha|nrrd|zip)$/i, "") + "_sct.nii.gz";
    link.classList.remove("hidden");
    qa.result = { status: response.status, bytes: sct.byteLength };
  }

  function endpointMode() {
    $("drop").classList.remove("hidden");
    $("flags").innerHTML = "<li class='none'>none yet: drop a study</li>";
    $("spread").disabled = true;
    $("token").value = sessionStorage.getItem("hmss-token") || "";
    const run = (file) => synthesize(file).catch((e) => say(String(e), true));
    $("file").addEventListener("change", (e) => { if (e.target.files.length) run(e.target.files[0]); });
    const zone = document.body;
    zone.addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
    zone.addEventListener("dragleave", () => $("drop").classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      $("drop").classList.remove("over");
      if (e.dataTransfer.files.length) run(e.dataTransfer.files[0]);
    });
  }

  async function studyMode(study) {
    $("title").textContent = "hmss-ray QA: " + study.title;
    document.title = "QA " + study.title;
    $("model").textContent = study.caption || "";
    showReport(study.qa || {});
    for (const role of ["mr", "sct", "ct", "diff"]) {
      if (study.volumes[role]) await show(role, study.volumes[role], role + ".nii.gz");
    }
    if (study.volumes.spread) await overlaySpread(study.volumes.spread);
    else $("spread").disabled = true;
  }

  async function main() {
    document.querySelectorAll("[data-preset]").forEach((b) => {
      b.addEventListener("click", () => setPreset(b.dataset.preset));
    });
    $("spread").addEventListener("change", (e) => toggleSpread(e.target.checked));
    if (window.HMSS_QA) await studyMode(window.HMSS_QA);
    else endpointMode();
    qa.ready = true;
  }

  main().catch((e) => { qa.error = String(e); say(String(e), true); });
})();
