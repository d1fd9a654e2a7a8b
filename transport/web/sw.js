// troupe's service worker: the page and its assets, network first, from
// its cache when the network fails, so that the editor reloads offline
// (offline.js keeps the unsent edits). The API and the WebSocket are not
// its business: they always go to the network.
'use strict';

const CACHE = 'troupe-page';

// assetsOf lists the versioned assets a page links.
const assetsOf = (html) => [...html.matchAll(/"(\/assets\/[a-z]+\.(?:js|css)\?v=[0-9a-f]+)"/g)].map((m) => m[1]);

// keep caches a fresh page and the assets it links, and drops the assets
// of older pages.
async function keep(page) {
  const cache = await caches.open(CACHE);
  const html = await page.clone().text();
  const wanted = new Set(assetsOf(html));
  await cache.put('/', page);
  for (const req of await cache.keys()) {
    const u = new URL(req.url);
    if (u.pathname !== '/' && !wanted.has(u.pathname + u.search)) await cache.delete(req);
  }
  await Promise.all([...wanted].map(async (a) => {
    if (!(await cache.match(a))) await cache.add(a);
  }));
}

self.addEventListener('install', (e) => {
  e.waitUntil((async () => {
    const page = await fetch('/', { cache: 'no-cache' });
    if (page.ok) await keep(page);
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (url.pathname !== '/' && !url.pathname.startsWith('/assets/')) return;
  e.respondWith((async () => {
    const key = url.pathname === '/' ? '/' : url.pathname + url.search;
    try {
      const r = await fetch(e.request);
      if (r.ok && key === '/') e.waitUntil(keep(r.clone()));
      return r;
    } catch (err) {
      const hit = await (await caches.open(CACHE)).match(key);
      if (hit) return hit;
      throw err;
    }
  })());
});
