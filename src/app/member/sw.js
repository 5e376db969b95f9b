// The member page's service worker: it makes the page installable and keeps the last page
// for when the network is gone. It never touches an open (a POST) or anything but the page's
// own GETs.
"use strict";
const CACHE = "portier-member-v1";
const SHELL = ["/m/manifest.webmanifest", "/m/icon.svg"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)));
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return; // opens and logouts always go to the gateway
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith("/m/")) return;
  if (SHELL.includes(url.pathname)) {
    event.respondWith(caches.match(request).then((hit) => hit || fetch(request)));
    return;
  }
  if (request.mode === "navigate") {
    // The gateway first (the doors change); the last copy when it cannot be reached.
    event.respondWith(
      fetch(request)
        .then((response) => {
          if (response.ok) {
            const copy = response.clone();
            caches.open(CACHE).then((cache) => cache.put(request, copy));
          }
          return response;
        })
        .catch(() => caches.match(request))
    );
  }
});
