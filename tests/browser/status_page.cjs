// Drives the status page in Debian's headless Chromium (playwright-core) as its users do:
// a visitor without a session sees the sign-in form and no data; a wrong password is refused
// with a message; signed in, the numbers equal `orderlake-archiver status --json`; a running
// query appears and its Cancel button stops it. Prints {"check": ..., "ok": ...} lines.
//
//   node status_page.cjs <page url> <user> <password> <expected status json> <screenshot.png>
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");

const [url, user, password, expectedPath, screenshot] = process.argv.slice(2);
const expected = JSON.parse(fs.readFileSync(expectedPath, "utf8"));
const fmt = new Intl.NumberFormat("en");
let failed = false;
function check(name, ok, detail) {
  console.log(JSON.stringify({ check: name, ok: !!ok, detail }));
  if (!ok) failed = true;
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.ORDERLAKE_TEST_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();

    // Not signed in: the form, no data, and the API refuses.
    await page.goto(url);
    check("visitor sees the sign-in form", await page.locator("form#login").isVisible());
    check("visitor sees no data", (await page.locator("#rows").count()) === 0);
    const api = await page.request.get(url + "api/status");
    check("the API refuses a visitor", api.status() === 401, api.status());

    await page.fill("#user", user);
    await page.fill("#password", "not the password");
    await page.click("button[type=submit]");
    const error = await page.locator("#error").textContent();
    check("a wrong password is refused with a reason", /wrong user name or password/.test(error), error);

    await page.fill("#user", user);
    await page.fill("#password", password);
    await page.click("button[type=submit]");
    await page.waitForSelector("body[data-loaded=true]", { timeout: 20000 });

    const shown = async (id) => (await page.locator("#" + id).textContent()).trim();
    check("rows equal status --json", (await shown("rows")) === fmt.format(expected.rows),
      [await shown("rows"), expected.rows]);
    check("files equal status --json", (await shown("files")) === fmt.format(expected.files),
      [await shown("files"), expected.files]);
    check("version equals status --json", (await shown("version")) === fmt.format(expected.version),
      [await shown("version"), expected.version]);
    const undecoded = expected.partitions.reduce((a, p) => a + p.undecoded_rows, 0);
    check("undecodable rows equal status --json", (await shown("undecoded")) === fmt.format(undecoded),
      [await shown("undecoded"), undecoded]);
    const topics = [...new Set(expected.partitions.map((p) => p.topic))].sort();
    const freshness = await page.locator("#freshness tbody tr td:first-child").allTextContents();
    check("freshness lists every topic", JSON.stringify(freshness) === JSON.stringify(topics),
      [freshness, topics]);
    const eventTimes = await page.locator("#freshness tbody tr td:nth-child(4)").allTextContents();
    check("freshness gives each topic's newest event time",
      eventTimes.length === topics.length && eventTimes.every((t) => t !== "–"), eventTimes);
    const growth = await page.locator("#growth-rows rect title").allTextContents();
    check("the growth chart ends at today's rows",
      growth.length >= 1 && growth[growth.length - 1].endsWith(": " + fmt.format(expected.rows)), growth);
    const bars = await page.locator("#chart-rows rect").count();
    check("the size chart has a bar per partition", bars === expected.by_partition.length,
      [bars, expected.by_partition.length]);
    const firstCommit = await page.locator("#commits tbody tr:first-child td:first-child").textContent();
    check("the last commit is the table version", Number(firstCommit) === expected.version, firstCommit);
    const views = await page.locator("#views tbody tr td:first-child").allTextContents();
    check("the archive's views are listed, not information_schema's",
      views.length > 0 && !views.includes("columns") && !views.includes("df_settings"), views);

    // The running query appears; its Cancel button stops it.
    const button = page.locator("#running button.cancel");
    await button.first().waitFor({ timeout: 20000 });
    const id = await button.first().getAttribute("data-query-id");
    await button.first().click();
    await page.waitForFunction((qid) =>
      ![...document.querySelectorAll("#running button")].some((b) => b.dataset.queryId === qid) &&
      [...document.querySelectorAll("#recent tbody tr")].some((tr) =>
        tr.cells[0].textContent === qid && tr.cells[3].textContent === "cancelled"),
      id, { timeout: 20000 });
    check("the cancelled query leaves the running list as cancelled", true, id);

    await page.screenshot({ path: screenshot, fullPage: true });
  } catch (e) {
    check("page", false, String(e));
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify({ check: "all", ok: !failed }));
  process.exit(failed ? 1 : 0);
})();
