// An HTTP service in JavaScript: StarlingMonkey's fetch event, made a wasi:http/proxy
// component by componentize-js (build.sh). Served at /system/services/{name}/exposed/.
// - POST .../upper answers the body upper-cased;
// - any other request answers with its method, path and query.
addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  if (request.method === 'POST' && url.pathname.endsWith('/upper')) {
    const text = await request.text();
    return new Response(text.toUpperCase(), { headers: { 'content-type': 'text/plain' } });
  }
  const query = url.search.startsWith('?') ? url.search.slice(1) : url.search;
  return new Response(`${request.method} ${url.pathname} query=${query}\n`, {
    headers: { 'content-type': 'text/plain' },
  });
}
