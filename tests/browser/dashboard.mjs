// Drives Debian's headless Chromium through the controller's dashboard, as a user would: opens
// the login link `ringrift up` printed, checks each page's DOM, that the page updates itself
// without reloading, and that the browser logged no console error; keeps a screenshot of each
// page. Run by tests/tests/dashboard_browser.rs:
//   node dashboard.mjs <login-url> <loop namespace/name> <screenshot dir>
// with RINGRIFT_BROWSER_MODULES naming the node_modules that holds playwright-core (pinned in
// package.json, installed by scripts/install-tools.sh) and CHROMIUM the browser binary.
// With RINGRIFT_TLS_LOGIN (a TLS dashboard's login link), RINGRIFT_NSS_HOME (a $HOME whose NSS
// database trusts the cluster CA) and RINGRIFT_EMPTY_HOME, it also checks the TLS dashboard.
// Prints one JSON line of what it saw; exits 1 with the reason on the first check that fails.
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

const [loginUrl, loopKey, shots] = process.argv.slice(2);
if (!loginUrl || !loopKey || !shots) {
  console.error("usage: node dashboard.mjs <login-url> <namespace/loop> <screenshot-dir>");
  process.exit(2);
}
const require = createRequire(join(resolve(process.env.RINGRIFT_BROWSER_MODULES || "."), "noop.js"));
const { chromium } = require("playwright-core");
const base = new URL(loginUrl).origin;
const [ns, loopName] = loopKey.split("/");
mkdirSync(shots, { recursive: true });

const consoleErrors = [];
let collecting = false; // console errors count between logging in and logging out
const seen = {};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
let failure = null;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  page.on("console", (m) => { if (collecting && m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push("page error: " + e.message));
  const shot = (name) => page.screenshot({ path: join(shots, name + ".png"), fullPage: true });

  // Without a session the dashboard asks to log in.
  await page.goto(base + "/");
  await page.waitForSelector("form[action='/login'] input[name=token]");
  seen.loginPageWithoutSession = true;

  // The login link becomes a session cookie and lands on the fleet page.
  collecting = true;
  await page.goto(loginUrl);
  if (new URL(page.url()).pathname !== "/") throw new Error("the login link led to " + page.url());
  const row = page.locator(`[data-testid=loop-row][data-loop="${loopKey}"]`);
  await row.waitFor();
  seen.fleetRow = (await row.innerText()).replace(/\s+/g, " ").trim();
  if (!/Elo|\d/.test(seen.fleetRow)) throw new Error("the fleet row shows no figures: " + seen.fleetRow);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "ringrift_dashboard");
  if (!session || !session.httpOnly || session.sameSite !== "Strict") throw new Error("no HttpOnly SameSite=Strict session cookie: " + JSON.stringify(cookies));

  // Live: the page updates itself (the "updated" time changes) without a reload.
  await page.evaluate(() => { window.__notReloaded = true; });
  const first = await page.locator("#updated").innerText();
  await page.waitForFunction((t) => document.getElementById("updated").textContent !== t, first, { timeout: 10000 });
  if (!(await page.evaluate(() => window.__notReloaded === true))) throw new Error("the page reloaded");
  seen.liveUpdate = true;
  await shot("fleet");

  // The loop: the Elo chart has the first generation's point, the history its row.
  await row.locator("a").first().click();
  await page.waitForURL(`**/loops/${ns}/${loopName}`);
  const point = page.locator("svg[data-testid=elo-chart] circle.point[data-generation='1']");
  await point.waitFor();
  seen.chartPoints = await page.locator("svg[data-testid=elo-chart] circle.point").count();
  seen.historyRows = await page.locator("[data-testid=history-row]").count();
  if (seen.historyRows < 1) throw new Error("the loop page shows no history");
  await shot("loop");

  // Lineage: the promoted model under the tree.
  await page.goto(base + "/lineage");
  await page.locator("[data-testid=lineage-model]").first().waitFor();
  seen.lineageModels = await page.locator("[data-testid=lineage-model]").count();
  seen.promotedModels = await page.locator("[data-testid=lineage-model].promoted").count();
  seen.bestModels = await page.locator("[data-testid=lineage-model].best").count();
  if (seen.bestModels !== 1) throw new Error("the lineage shows " + seen.bestModels + " best models, not one");
  if (seen.promotedModels < 1) throw new Error("the lineage shows no promoted model");
  await shot("lineage");

  // The matchup matrix.
  await page.goto(base + "/matchups");
  await page.locator("table[data-testid=matchups] td").first().waitFor();
  seen.matchupTables = await page.locator("table[data-testid=matchups]").count();
  await shot("matchups");

  // Agents, each with its health.
  await page.goto(base + "/agents");
  await page.locator("[data-testid=agent-row]").first().waitFor();
  seen.agents = await page.locator("[data-testid=agent-row]").count();
  seen.agentsReady = await page.locator("[data-testid=agent-row] .tag.ready").count();
  await shot("agents");

  // A task of the first generation, with its log fetched through the agent's REST API.
  await page.goto(`${base}/loops/${ns}/${loopName}`);
  await page.locator("[data-testid=history-row]").first().waitFor();
  const jobLink = page.locator("[data-testid=history]").locator("a").first();
  await jobLink.click();
  // A selfplay task (a copy task runs no process and has no log).
  const selfplayTask = page.locator("[data-testid=task-row][data-role=selfplay] a").first();
  await selfplayTask.waitFor();
  await selfplayTask.click();
  await page.waitForFunction(() => (document.querySelector("pre[data-testid=log]")?.textContent || "").length > 0);
  seen.logBytes = (await page.locator("pre[data-testid=log]").innerText()).length;
  await shot("task");

  // Recent events.
  await page.goto(base + "/events");
  await page.locator("table[data-testid=events] tbody tr").first().waitFor();
  seen.events = await page.locator("table[data-testid=events] tbody tr").count();
  await shot("events");

  // Logging out ends the session (the refused fetch below logs a console error of its own).
  collecting = false;
  await page.goto(base + "/logout");
  await page.waitForSelector("form[action='/login']");
  const status = await page.evaluate(async () => (await fetch("/api/overview")).status);
  if (status !== 401) throw new Error("after logging out the API answered " + status);
  seen.loggedOut = true;
} catch (e) {
  failure = e.message;
} finally {
  await browser.close();
}

// A TLS dashboard (`ringrift server`'s, certificate from the cluster CA): refused by a browser
// that does not trust the CA, opened by one whose NSS database (under $HOME) does.
const tlsLogin = process.env.RINGRIFT_TLS_LOGIN;
if (!failure && tlsLogin) {
  const launch = (home) => chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    env: { ...process.env, HOME: home },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  try {
    const untrusting = await launch(process.env.RINGRIFT_EMPTY_HOME);
    try {
      const page = await untrusting.newPage();
      const refused = await page.goto(tlsLogin).then(() => null, (e) => e.message);
      if (!refused || !/ERR_CERT/.test(refused)) throw new Error("a browser without the cluster CA opened the TLS dashboard: " + refused);
      seen.tlsRefusedWithoutCa = refused.match(/ERR_CERT_[A-Z_]+/)[0];
    } finally {
      await untrusting.close();
    }
    const trusting = await launch(process.env.RINGRIFT_NSS_HOME);
    try {
      const context = await trusting.newContext({ viewport: { width: 1280, height: 700 } });
      const page = await context.newPage();
      page.on("console", (m) => { if (m.type() === "error") consoleErrors.push("tls: " + m.text()); });
      await page.goto(tlsLogin);
      await page.waitForSelector("main h1");
      seen.tlsPage = await page.locator("main h1").first().innerText();
      if (seen.tlsPage !== "Fleet") throw new Error("the TLS dashboard showed " + seen.tlsPage);
      const cookie = (await context.cookies()).find((c) => c.name === "ringrift_dashboard");
      if (!cookie || !cookie.secure) throw new Error("the TLS session cookie is not Secure: " + JSON.stringify(cookie));
      await page.screenshot({ path: join(shots, "fleet-tls.png") });
    } finally {
      await trusting.close();
    }
  } catch (e) {
    failure = e.message;
  }
}
if (!failure && consoleErrors.length) failure = "console errors: " + JSON.stringify(consoleErrors);
console.log(JSON.stringify({ ok: !failure, failure, seen, consoleErrors }));
process.exit(failure ? 1 : 0);
