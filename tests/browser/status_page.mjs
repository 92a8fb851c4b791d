// Drives the status page in headless Chromium the way an operator would: a refused login, then
// the admin token; the tenants and a dead letter on the page (screenshot); the dead letter
// replayed with its button until the page shows the delivery; a new adapter version uploaded
// with the deploy form, then rolled back with the rollback button; the same version uploaded
// as a canary for 30% of the tickets, shown beside the current one, then aborted.
//
// node status_page.mjs --url URL --token TOKEN --tenant NAME --dead-letter ID \
//   --original FILE --new FILE --screenshot FILE.png [--chromium PATH]
//
// Prints each step; exits 1 on the first failed expectation, or when the browser reported an
// error (a Content-Security-Policy violation, a failed script, a broken resource).

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    tenant: { type: 'string' },
    'dead-letter': { type: 'string' },
    original: { type: 'string' },
    new: { type: 'string' },
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: process.env.DOLPHIN_BRIDGE_CHROMIUM || '/usr/bin/chromium' },
  },
  strict: true,
});
for (const name of ['url', 'token', 'tenant', 'dead-letter', 'original', 'new', 'screenshot']) {
  if (!opts[name]) {
    console.error(`status_page.mjs: --${name} is required`);
    process.exit(2);
  }
}

/// How long one expectation may take to come true.
const WAIT_MS = 20_000;

const sha256 = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');
const originalHash = sha256(opts.original);
const newHash = sha256(opts.new);
const tenant = opts.tenant;
const deadLetter = opts['dead-letter'];

class Failed extends Error {}

function step(text) {
  console.log(`browser: ${text}`);
}

function expect(condition, what) {
  if (!condition) {
    throw new Failed(what);
  }
}

/// Reloads the page until `check()` holds (the page is server-rendered: it changes on reload).
async function untilOnReload(page, what, check) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (await check()) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Failed(`${what}: not seen within ${WAIT_MS} ms`);
    }
    await page.waitForTimeout(200);
    await page.reload();
  }
}

async function flash(page) {
  return (await page.locator('p#flash').textContent({ timeout: WAIT_MS })).trim();
}

async function shownHash(page) {
  return page.locator(`tr.tenant[data-tenant="${tenant}"] .version code.hash`).getAttribute('title');
}

async function activeVersion(page) {
  return page
    .locator(`#deployments .tenant-deploy[data-tenant="${tenant}"] ol.versions li.version.active`)
    .getAttribute('data-hash');
}

// Playwright gives the browser a new, empty profile of its own (its user data dir); the flags
// keep Chromium from reaching out to the network by itself.
const browser = await chromium.launch({
  executablePath: opts.chromium,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const browserErrors = [];
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('console', (message) => {
    if (message.type() === 'error') {
      browserErrors.push(`${message.text()} (${message.location().url})`);
    }
  });
  page.on('pageerror', (error) => browserErrors.push(String(error)));
  page.on('response', (response) => {
    if (response.status() >= 400) {
      browserErrors.push(`${response.request().method()} ${response.url()}: HTTP ${response.status()}`);
    }
  });

  step(`open ${opts.url}/admin`);
  await page.goto(`${opts.url}/admin`);
  await page.locator('form#login').waitFor();
  expect((await page.locator('table#tenants').count()) === 0, 'the tenants are shown before logging in');

  step('log in with a wrong token: refused');
  await page.locator('input#token').fill('not-the-admin-token');
  await page.locator('form#login button[type=submit]').click();
  await page.locator('p#login-error').waitFor();
  expect((await context.cookies()).length === 0, 'a refused login set a cookie');
  // The 401 of the refused login is the one error the browser should report.
  const unexpected = browserErrors.filter((e) => !e.includes('/admin/login'));
  browserErrors.length = 0;
  browserErrors.push(...unexpected);

  step('log in with the admin token');
  await page.locator('input#token').fill(opts.token);
  await page.locator('form#login button[type=submit]').click();
  await page.locator('table#tenants').waitFor();
  const cookies = await context.cookies();
  expect(cookies.length === 1, `one session cookie, got ${JSON.stringify(cookies.map((c) => c.name))}`);
  expect(cookies[0].httpOnly, 'the session cookie is not HttpOnly');
  expect(cookies[0].sameSite === 'Strict', `the session cookie is SameSite=${cookies[0].sameSite}`);

  step(`see tenant ${tenant} on version ${originalHash.slice(0, 12)} and dead letter ${deadLetter}`);
  const tenantRow = page.locator(`table#tenants tr.tenant[data-tenant="${tenant}"]`);
  await tenantRow.waitFor();
  expect((await shownHash(page)) === originalHash, `the tenant runs ${await shownHash(page)}`);
  const letterRow = page.locator(`table#dead-letters tr.dead-letter[data-delivery-id="${deadLetter}"]`);
  await letterRow.waitFor();
  expect((await letterRow.getAttribute('data-tenant')) === tenant, 'the dead letter belongs to another tenant');
  expect(
    (await tenantRow.locator('.last-success').textContent()).includes('none since start'),
    'a success shown before the replay',
  );
  expect((await page.locator(`#activity figure[data-tenant="${tenant}"] svg.chart`).count()) === 1, 'no chart');

  step(`screenshot to ${opts.screenshot}`);
  await page.screenshot({ path: opts.screenshot, fullPage: true });

  step('replay the dead letter with its button');
  await letterRow.locator('form.replay button[type=submit]').click();
  await page.waitForLoadState();
  const replayed = await flash(page);
  expect(replayed === `replayed ${deadLetter}`, `the page said "${replayed}"`);

  step('see it delivered: gone from the dead letters, a success on the tenant');
  await untilOnReload(page, 'the delivery', async () => {
    const success = await tenantRow.locator('.last-success').textContent();
    return !success.includes('none since start');
  });
  expect((await letterRow.count()) === 0, 'the replayed dead letter is still listed');
  const count = (await page.locator('p#dead-letter-count').textContent()).trim();
  expect(count.startsWith('0 matching'), `the dead letter count says "${count}"`);

  step(`deploy ${opts.new} (${newHash.slice(0, 12)}) with the deploy form`);
  const deployBox = page.locator(`#deployments .tenant-deploy[data-tenant="${tenant}"]`);
  await deployBox.locator('form.deploy input[type=file][name=component]').setInputFiles(opts.new);
  await deployBox.locator('form.deploy button[type=submit]').click();
  await page.waitForLoadState();
  const deployed = await flash(page);
  expect(deployed.startsWith(`${tenant}: deployed ${newHash.slice(0, 12)} `), `the page said "${deployed}"`);
  expect((await shownHash(page)) === newHash, `after the deploy the tenant runs ${await shownHash(page)}`);
  expect((await activeVersion(page)) === newHash, `the active version is ${await activeVersion(page)}`);
  expect(
    (await page.locator(`table#history tr.event[data-kind="deployed"][data-tenant="${tenant}"]`).count()) >= 1,
    'no deployment in the history',
  );

  step('roll back with the rollback button');
  await deployBox.locator('form.rollback button[type=submit]').click();
  await page.waitForLoadState();
  const rolledBack = await flash(page);
  expect(
    rolledBack === `${tenant}: rolled back to ${originalHash.slice(0, 12)}`,
    `the page said "${rolledBack}"`,
  );
  expect((await shownHash(page)) === originalHash, `after the rollback the tenant runs ${await shownHash(page)}`);
  expect(
    (await page.locator(`table#history tr.event[data-kind="rolled-back"][data-tenant="${tenant}"]`).count()) >= 1,
    'no rollback in the history',
  );

  step(`deploy ${opts.new} again as a canary for 30% of the tickets`);
  await deployBox.locator('form.deploy input[type=file][name=component]').setInputFiles(opts.new);
  await deployBox.locator('form.deploy input[name=canary]').fill('30');
  await deployBox.locator('form.deploy button[type=submit]').click();
  await page.waitForLoadState();
  const canaryDeployed = await flash(page);
  expect(
    canaryDeployed.startsWith(`${tenant}: deployed ${newHash.slice(0, 12)} `) &&
      canaryDeployed.endsWith('as a canary for 30% of the tickets'),
    `the page said "${canaryDeployed}"`,
  );
  expect((await shownHash(page)) === originalHash, `with a canary the tenant still runs ${await shownHash(page)}`);
  const canaryTable = deployBox.locator(`table.canary[data-tenant="${tenant}"]`);
  expect((await canaryTable.locator('tr.current, tr.canary').count()) === 2, 'no side-by-side canary table');
  expect(
    (await deployBox.locator(`ol.versions li.version.canary[data-hash="${newHash}"]`).count()) === 1,
    'the canary is not marked in the versions',
  );

  step('abort the canary with its button');
  await deployBox.locator('form.canary-abort button[type=submit]').click();
  await page.waitForLoadState();
  const aborted = await flash(page);
  expect(aborted === `${tenant}: canary ${newHash.slice(0, 12)} aborted`, `the page said "${aborted}"`);
  expect((await canaryTable.count()) === 0, 'the canary table is still shown');
  expect(
    (await page.locator(`table#history tr.event[data-kind="canary-aborted"][data-tenant="${tenant}"]`).count()) >= 1,
    'no aborted canary in the history',
  );

  step('log out');
  await page.locator('form#logout button[type=submit]').click();
  await page.locator('form#login').waitFor();

  expect(browserErrors.length === 0, `the browser reported errors:\n  ${browserErrors.join('\n  ')}`);
  step('all expectations met');
} catch (error) {
  console.error(`browser: FAILED: ${error instanceof Failed ? error.message : error.stack}`);
  if (browserErrors.length > 0) {
    console.error(`browser: errors the page reported:\n  ${browserErrors.join('\n  ')}`);
  }
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
