// The web page as people use it, in headless Chromium: by keyboard, on a
// phone-sized screen, with a fake microphone, with bad files and with a
// second file chosen while the first is still being explained.
// Usage: node e2e.mjs BASE_URL CLIP OTHER_CLIP SCREENSHOT_DIR
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, join } from "node:path";
import { chromium } from "playwright-core";

const [base, clip, otherClip, shots] = process.argv.slice(2);
if (!base || !clip || !otherClip || !shots) {
  console.error("usage: node e2e.mjs BASE_URL CLIP OTHER_CLIP SCREENSHOT_DIR");
  process.exit(2);
}
const axeSource = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const form = new FormData();
form.append("file", new Blob([await readFile(clip)]), basename(clip));
const api = await (await fetch(`${base}/api/predict`, { method: "POST", body: form })).json();
check(api.label, `/api/predict gave no label: ${JSON.stringify(api)}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"],
});

/** A page that records every page error, console error and console warning. */
async function open(viewport) {
  const context = await browser.newContext({ viewport });
  await context.grantPermissions(["microphone"], { origin: base });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A refused upload (4xx) is logged by Chromium itself; the page shows the refusal.
    const refused = m.text().startsWith("Failed to load resource: the server responded with a status of 4");
    if ((m.type() === "error" || m.type() === "warning") && !refused) problems.push(`console ${m.type()}: ${m.text()}`);
  });
  await page.goto(base);
  await page.waitForFunction(() => !document.getElementById("model-info").textContent.startsWith("loading"));
  return { page, problems };
}

const explained = (page) =>
  page.waitForFunction(() => document.getElementById("explanation-img").naturalWidth > 0, null, { timeout: 60000 });

// The file chooser `act` opens. Playwright turns the interception of file choosers on
// without waiting for the browser; in about 1 run in 4 the page opened its chooser
// (the click handler ran, with user activation) before that took effect, and no event
// came. A round trip to the page first makes sure it has.
async function chooserOpenedBy(page, act) {
  const opened = page.waitForEvent("filechooser");
  await page.evaluate(() => 0);
  await act();
  return opened;
}

async function noSeriousViolations(page, where) {
  await page.addScriptTag({ path: axeSource });
  const found = await page.evaluate(async () => (await window.axe.run()).violations);
  const serious = found.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(!serious.length, `${where}: accessibility violations:\n${serious.map((v) =>
    `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`).join("\n")}`);
}

try {
  const { page, problems } = await open({ width: 1280, height: 800 });
  const about = await page.textContent("#about-body");
  check(about.includes("not a diagnosis"), `the about box: ${about}`);
  check(!(await page.textContent("header")).includes("/"), "the header shows a local path");

  // (3) Keyboard only: Tab reaches the file button, Enter opens the chooser.
  let focused = "";
  for (let i = 0; i < 5 && focused !== "choose"; i++) {
    await page.keyboard.press("Tab");
    focused = await page.evaluate(() => document.activeElement.id);
  }
  check(focused === "choose", `Tab never reached the file button (last: ${focused})`);
  const predictions = [];
  page.on("request", (r) => { if (r.url().endsWith("/api/predict")) predictions.push(r); });
  const chooser = await chooserOpenedBy(page, () => page.keyboard.press("Enter"));
  await chooser.setFiles(clip);
  await page.waitForSelector("#emotion:not(:empty)", { timeout: 30000 });
  const shown = (await page.textContent("#emotion")).trim();
  check(shown === api.label, `the page shows ${shown}, /api/predict says ${api.label}`);
  const bars = await page.locator("#bars .bar").count();
  check(bars === Object.keys(api.probabilities).length, `${bars} probability bars`);
  await explained(page);
  check(await page.isHidden("#error"), `the page shows an error: ${await page.textContent("#error")}`);
  await noSeriousViolations(page, "desktop, with a result and an explanation");
  await page.screenshot({ path: join(shots, "web-desktop.png"), fullPage: true });

  // (4) The same file again is a new request (the input is cleared after each choice).
  check(await page.inputValue("#file-input") === "", "the file input keeps its value");
  const again = await chooserOpenedBy(page, () => page.click("#choose"));
  await again.setFiles(clip);
  await page.waitForFunction(() => document.getElementById("main").getAttribute("aria-busy") === "false"
    && document.getElementById("explanation-img").naturalWidth > 0, null, { timeout: 60000 });
  check(predictions.length === 2, `the same file twice made ${predictions.length} requests`);

  // (2) A bad file: the error replaces the old result, and names the file once.
  await page.setInputFiles("#file-input", { name: "text.wav", mimeType: "audio/wav", buffer: Buffer.from("not audio") });
  await page.waitForSelector("#error", { state: "visible", timeout: 30000 });
  const error = await page.textContent("#error");
  check(error.includes("not a recognised audio format"), `unclear error: ${error}`);
  check(error.split("text.wav").length === 2, `the file is named more than once: ${error}`);
  check(await page.isHidden("#result") && await page.isHidden("#why"), "the previous result stays under the error");

  // (1) A second file while the first is explained: only the second's answers are shown.
  let delayed = false;
  await page.route("**/api/explain", async (route) => {
    if (!delayed) {
      delayed = true;
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
    await route.continue().catch(() => {}); // the page may have cancelled it meanwhile
  });
  const pictures = new Map();
  page.on("response", async (r) => {
    if (r.url().endsWith("/api/explain")) {
      try { const e = await r.json(); pictures.set(basename(e.file), e.png_base64); } catch { /* aborted */ }
    }
  });
  await page.setInputFiles("#file-input", clip);
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Working out why"));
  await page.setInputFiles("#file-input", otherClip);
  await explained(page);
  await page.waitForTimeout(4000); // the first explanation, if it were not dropped, would arrive now
  const src = await page.getAttribute("#explanation-img", "src");
  const last = basename(otherClip);
  check(pictures.has(last) && src === `data:image/png;base64,${pictures.get(last)}`,
    `the picture shown is not ${last}'s (explanations received: ${[...pictures.keys()].join(", ")})`);
  check((await page.textContent("#duration")).includes(last), "the prediction card names another file");
  await page.unroute("**/api/explain");

  // The fake microphone (Chromium's test tone): a recording gives a result or a clear refusal, and no warnings.
  await page.click("#record");
  await page.waitForFunction(() => document.getElementById("record").textContent.includes("Stop"));
  await page.waitForTimeout(2000);
  await page.click("#record");
  await page.waitForFunction(() => document.getElementById("main").getAttribute("aria-busy") === "false"
    && (document.getElementById("emotion").textContent || document.getElementById("error").textContent), null, { timeout: 60000 });
  const recorded = (await page.textContent("#emotion")) || (await page.textContent("#error"));
  check(!problems.length, problems.join("\n"));

  // (5) A phone: nothing wider than the screen, with a result and an explanation.
  const phone = await open({ width: 360, height: 780 });
  await phone.page.setInputFiles("#file-input", otherClip);
  await explained(phone.page);
  const width = await phone.page.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 360, `the page is ${width} px wide on a 360 px screen`);
  await noSeriousViolations(phone.page, "phone, with a result and an explanation");
  await phone.page.setViewportSize({ width: 390, height: 844 });
  await phone.page.screenshot({ path: join(shots, "web-phone.png"), fullPage: true });
  check(!phone.problems.length, phone.problems.join("\n"));
  console.log(JSON.stringify({ shown, api: api.label, recorded, shots }));
} finally {
  await browser.close();
}
