// agent-session serve: "load earlier" in place, live updates over server-sent events, and the
// confirmed writes. Everything inserted comes from this server, already escaped.
"use strict";

function pairOutputs(root) {
  // An output that arrived after its call (live, or in a later page) moves under its call.
  root.querySelectorAll(':scope > .call-output').forEach(function (out) {
    var id = out.dataset.callId;
    if (!id) return;
    var calls = root.querySelectorAll('.call');
    for (var i = 0; i < calls.length; i++) {
      if (calls[i].dataset.callId === id) {
        calls[i].querySelector('.outputs').appendChild(out);
        return;
      }
    }
  });
}

function setupEarlier(root) {
  root.addEventListener('click', function (ev) {
    var link = ev.target.closest('a.earlier');
    if (!link) return;
    ev.preventDefault();
    link.textContent = 'loading…';
    fetch(link.dataset.fragment, { credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        link.insertAdjacentHTML('afterend', '');
        var holder = document.createElement('div');
        holder.innerHTML = html;
        var nodes = Array.prototype.slice.call(holder.childNodes);
        var anchor = link.nextSibling;
        link.remove();
        nodes.forEach(function (n) { root.insertBefore(n, anchor); });
        pairOutputs(root);
      })
      .catch(function (e) { link.textContent = 'load earlier (failed: ' + e.message + ')'; });
  });
}

function setupLive(root) {
  if (!root.dataset.events || !window.EventSource) return;
  var status = document.getElementById('live');
  var url = root.dataset.events + (root.dataset.after ? '?after=' + encodeURIComponent(root.dataset.after) : '');
  var es = new EventSource(url);
  es.addEventListener('open', function () { status.textContent = 'live: new items appear here'; });
  es.addEventListener('items', function (ev) {
    var data = JSON.parse(ev.data);
    root.insertAdjacentHTML('beforeend', data.html);
    pairOutputs(root);
    if (data.count !== null && data.count !== undefined) {
      var c = document.getElementById('item-count');
      if (c) c.textContent = String(data.count);
    }
    status.textContent = 'live: updated ' + new Date().toLocaleTimeString();
  });
  es.addEventListener('reset', function () {
    es.close();
    status.innerHTML = '';
    var a = document.createElement('a');
    a.href = window.location.pathname;
    a.textContent = 'The history changed (popped, cleared or replaced): reload';
    status.appendChild(a);
  });
  es.addEventListener('error', function () { status.textContent = 'live: reconnecting…'; });
}

function setupWrites() {
  var meta = document.querySelector('meta[name="csrf-token"]');
  document.querySelectorAll('button.write').forEach(function (b) {
    b.addEventListener('click', function () {
      if (!meta || !window.confirm(b.dataset.confirm)) return;
      fetch(b.dataset.action, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'X-CSRF-Token': meta.content }
      }).then(function (r) {
        if (!r.ok) return r.text().then(function (t) { throw new Error(t); });
        window.location.reload();
      }).catch(function (e) { window.alert(e.message); });
    });
  });
}

document.addEventListener('DOMContentLoaded', function () {
  var root = document.getElementById('conversation');
  if (root) {
    pairOutputs(root);
    setupEarlier(root);
    setupLive(root);
  }
  setupWrites();
});
