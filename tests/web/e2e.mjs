// The web page as a person uses it: open it in headless Chromium, upload a
// real clip, and check the emotion shown is the one /api/predict returns.
// Usage: node e2e.mjs BASE_URL CLIP SCREENSHOT.png
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { chromium } from "playwright-core";

const [base, clip, screenshot] = process.argv.slice(2);
if (!base || !clip || !screenshot) {
  console.error("usage: node e2e.mjs BASE_URL CLIP SCREENSHOT.png");
  process.exit(2);
}

const form = new FormData();
form.append("file", new Blob([await readFile(clip)]), basename(clip));
const api = await (await fetch(`${base}/api/predict`, { method: "POST", body: form })).json();
if (!api.label) throw new Error(`/api/predict gave no label: ${JSON.stringify(api)}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  await page.goto(base);
  await page.waitForFunction(() => !document.getElementById("model-info").textContent.startsWith("loading"));
  await page.setInputFiles("#file-input", clip);
  await page.waitForSelector("#emotion:not(:empty)", { timeout: 30000 });
  const shown = (await page.textContent("#emotion")).trim();
  if (shown !== api.label) throw new Error(`the page shows ${shown}, /api/predict says ${api.label}`);
  const bars = await page.locator("#bars .bar").count();
  if (bars !== Object.keys(api.probabilities).length) throw new Error(`${bars} probability bars`);
  await page.waitForFunction(() => document.getElementById("explanation-img").naturalWidth > 0, null, { timeout: 60000 });
  if (await page.isVisible("#error")) throw new Error(`the page shows an error: ${await page.textContent("#error")}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  if (problems.length) throw new Error(problems.join("\n"));

  // A file that is not audio: the page says so.
  await page.setInputFiles("#file-input", { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not audio") });
  await page.waitForSelector("#error", { state: "visible", timeout: 30000 });
  const error = await page.textContent("#error");
  if (!error.includes("not a recognised audio format")) throw new Error(`unclear error: ${error}`);
  console.log(JSON.stringify({ shown, api: api.label, screenshot }));
} finally {
  await browser.close();
}
