// portwarden's status page, enhanced: the live part refreshes in place
// every few seconds, the filter narrows the rows as one types, sorting and
// grouping happen without a reload. Without this script the page is a
// plain table that does all of it by query and reload.
'use strict';
(function () {
  var REFRESH_MS = 5000;
  var form = document.querySelector('form.controls');
  if (!form || !window.fetch || !window.DOMParser || !window.URLSearchParams) {
    return;
  }
  var input = form.elements.namedItem('q');
  var group = form.elements.namedItem('group');
  var sort = form.elements.namedItem('sort');
  var dir = form.elements.namedItem('dir');
  var updated = document.getElementById('updated');
  var busy = false;
  var typing = null;
  document.documentElement.classList.add('js');

  // What the page shows, as its query; `limit` kept from the address.
  function params() {
    var p = new URLSearchParams();
    p.set('sort', sort.value);
    p.set('dir', dir.value);
    p.set('group', group.value);
    var words = input.value.trim();
    if (words) {
      p.set('q', words);
    }
    var limit = new URLSearchParams(location.search).get('limit');
    if (limit) {
      p.set('limit', limit);
    }
    return p;
  }

  // The address bar keeps what one sees: a reload or a shared link shows it.
  function keepInUrl() {
    history.replaceState(null, '', '?' + params().toString());
  }

  function applyFilter() {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    var total = 0;
    document.querySelectorAll('#live tbody').forEach(function (body) {
      var any = false;
      body.querySelectorAll('tr[data-q]').forEach(function (row) {
        var text = row.getAttribute('data-q');
        var match = words.every(function (w) { return text.indexOf(w) !== -1; });
        row.hidden = !match;
        any = any || match;
        if (row.closest('#ports')) {
          total += 1;
          shown += match ? 1 : 0;
        }
      });
      var header = body.querySelector('tr.group');
      if (header) {
        header.hidden = !any;
      }
    });
    var count = document.getElementById('shown');
    if (count) {
      count.textContent = shown + ' of ' + total + ' rows shown.';
    }
  }

  function say(text, stale) {
    updated.textContent = text;
    updated.classList.toggle('stale', stale);
  }

  // Fetches this page, filtered as the box says, and swaps its live part;
  // the form, and what is being typed in it, stays. Between refreshes the
  // box narrows the rows already shown.
  function refresh() {
    if (busy || document.visibilityState === 'hidden') {
      return;
    }
    busy = true;
    fetch('?' + params().toString(), {
      headers: { Accept: 'text/html' },
      cache: 'no-store',
      credentials: 'same-origin',
      redirect: 'error'
    })
      .then(function (r) {
        if (!r.ok) {
          throw new Error('HTTP ' + r.status);
        }
        return r.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('live');
        var live = document.getElementById('live');
        if (!fresh || !live) {
          throw new Error('no live part in the answer');
        }
        live.replaceWith(document.adoptNode(fresh));
        applyFilter();
        say('updated ' + new Date().toLocaleTimeString(), false);
      })
      .catch(function (e) {
        say('refresh failed (' + e.message + '): showing what was known before', true);
      })
      .finally(function () {
        busy = false;
      });
  }

  form.addEventListener('submit', function (e) {
    e.preventDefault();
    keepInUrl();
    applyFilter();
  });
  input.addEventListener('input', function () {
    applyFilter();
    clearTimeout(typing);
    typing = setTimeout(function () {
      keepInUrl();
      refresh();
    }, 300);
  });
  group.addEventListener('change', function () {
    keepInUrl();
    refresh();
  });
  document.addEventListener('click', function (e) {
    var link = e.target.closest('#live thead a');
    if (!link) {
      return;
    }
    e.preventDefault();
    var to = new URL(link.href).searchParams;
    sort.value = to.get('sort') || 'port';
    dir.value = to.get('dir') || 'asc';
    keepInUrl();
    refresh();
  });
  document.addEventListener('visibilitychange', refresh);

  applyFilter();
  setInterval(refresh, REFRESH_MS);
}());
