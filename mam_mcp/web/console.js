/* The mam-mcp console: inboxes, messages, threads, outbound mail and drafts of the local backend,
 * kept current by the daemon's event stream (server-sent events), without reloading the page.
 *
 * Routes live in the URL fragment: #/i/<inbox>/<view>[/<item>][?q=<search>] with view one of
 * messages, threads, outbound, drafts, search. Everything that comes from mail is set as text;
 * an HTML body is only ever shown inside a sandboxed frame that the server also locks down (CSP).
 */
(function () {
  "use strict";

  var el = window.MamDraftReview.el;
  var base = document.querySelector('meta[name="mam-base"]').content;
  // The session's page key: the sign-in page (sign_in.js) keeps it in this origin's storage, where a
  // page on another port (another origin) cannot read it, and every request sends it. The session
  // cookie alone opens nothing: any server on this host can be sent that cookie, and the daemon
  // never hands the key out again. Read at each request: a sign-in in another tab replaces both the
  // cookie and the key, and this tab goes on with the new ones.
  var KEY_STORE = "mam-console-key:" + base;

  function pageKey() {
    try {
      return window.localStorage.getItem(KEY_STORE) || "";
    } catch (error) {
      return "";  // storage blocked: every request is refused, and the page says signed out
    }
  }
  var VIEWS = [
    ["messages", "Messages"],
    ["threads", "Threads"],
    ["outbound", "Outbound"],
    ["drafts", "Drafts"]
  ];
  var STATES = {
    captured: "captured locally: no relay is configured, so it did not leave this machine",
    sent: "relayed: the relay accepted it",
    delivered: "delivered to a local inbox",
    queued: "queued: the relay asked to try later",
    relaying: "being handed to the relay",
    failed: "failed",
    unknown: "unknown: the daemon stopped while handing it to the relay; it may have been delivered",
    partial: "partly delivered: the relay refused some recipients"
  };

  var inboxes = [];
  var route = {};
  var list = {key: null, pages: 0, next: null, seen: null};
  var detail = {key: null, review: null};
  var refreshTimer = null;
  var signedOut = false;

  var $ = function (id) { return document.getElementById(id); };

  // ---------------------------------------------------------------- talking to the daemon

  function api(path, options, retried) {
    options = options || {};
    var sentKey = pageKey();
    var init = {method: options.method || "GET", credentials: "same-origin", headers: {"X-Console-Key": sentKey}};
    if (options.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    return fetch(base + "/api" + path, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (response.status === 401) {
          if (!retried && pageKey() !== sentKey) {
            return api(path, options, true);  // signed in again in another tab meanwhile: its key
          }
          showSignedOut(sentKey);
        }
        if (!response.ok) {
          throw {status: response.status, code: data.code, message: data.error || "HTTP " + response.status, data: data};
        }
        return data;
      });
    });
  }

  // The event stream (EventSource sends no header) carries the key in its query; it is no
  // navigation, so no history keeps that URL.
  function keyed(url) {
    return url + (url.indexOf("?") >= 0 ? "&" : "?") + "key=" + encodeURIComponent(pageKey());
  }

  // A download link: fetched with the key in a header, saved from memory, so that no link, hover
  // text or download history ever shows a URL with the key.
  function downloadLink(path, filename, text) {
    // A button, not a link: a middle click or "Save link as" would skip the key and fail.
    return el("button", {type: "button", className: "link-like", text: text, onclick: function () {
      fetch(base + "/api" + path, {credentials: "same-origin", headers: {"X-Console-Key": pageKey()}})
        .then(function (response) {
          if (!response.ok) {
            throw new Error(response.status === 401 ? "signed out" : "HTTP " + response.status);
          }
          return response.blob();
        })
        .then(function (blob) {
          var url = URL.createObjectURL(blob);
          var save = el("a", {href: url, download: filename});
          document.body.appendChild(save);
          save.click();
          save.remove();
          window.setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
        }, function (error) { toast("Could not download " + filename + ": " + error.message); });
    }});
  }

  function inboxPath(suffix) {
    return "/inboxes/" + encodeURIComponent(route.inbox) + suffix;
  }

  function toast(text) {
    var box = $("toast");
    box.textContent = text;
    window.clearTimeout(toast.timer);
    toast.timer = window.setTimeout(function () { box.textContent = ""; }, 4000);
  }

  function showSignedOut(endedKey) {
    if (signedOut) {
      return;
    }
    signedOut = true;
    try {
      if (endedKey !== undefined && pageKey() === endedKey) {
        window.localStorage.removeItem(KEY_STORE);  // that session is over; a newer one stays
      }
    } catch (error) {
      // storage blocked: nothing kept, nothing to remove
    }
    if (live.source) {
      live.source.close();
    }
    document.body.textContent = "";
    document.body.appendChild(el("main", {className: "signed-out"},
      el("h1", {text: "mam-mcp console"}),
      el("p", {text: "You are signed out (the session ended, or the local backend restarted)."}),
      el("p", {}, "Run ", el("code", {text: "mam-mcp console"}), " in a terminal to open a new session.")));
  }

  // ---------------------------------------------------------------- formatting

  function when(iso) {
    if (!iso) {
      return "";
    }
    var date = new Date(iso);
    return isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  function count(n, capped) {
    return n >= 10000 && capped ? "10,000+" : String(n);
  }

  function sender(item) {
    return item.fromName ? item.fromName + " <" + (item.from || "") + ">" : item.from || "(unknown sender)";
  }

  function stateBadge(status) {
    return el("span", {className: "state state-" + status, text: status});
  }

  // ---------------------------------------------------------------- routing

  function parseRoute() {
    var hash = window.location.hash.replace(/^#/, "");
    var query = "";
    var at = hash.indexOf("?");
    if (at >= 0) {
      query = hash.slice(at + 1);
      hash = hash.slice(0, at);
    }
    var parts = hash.split("/").filter(Boolean).map(decodeURIComponent);
    var q = new URLSearchParams(query).get("q") || "";
    if (parts[0] !== "i" || !parts[1]) {
      return {inbox: null, view: "messages", item: null, q: ""};
    }
    var view = parts[2] || "messages";
    if (view !== "search" && !VIEWS.some(function (v) { return v[0] === view; })) {
      view = "messages";
    }
    return {inbox: parts[1], view: view, item: parts[3] || null, q: q};
  }

  function href(inbox, view, item, q) {
    var out = "#/i/" + encodeURIComponent(inbox) + "/" + view;
    if (item) {
      out += "/" + encodeURIComponent(item);
    }
    if (q) {
      out += "?q=" + encodeURIComponent(q);
    }
    return out;
  }

  function go() {
    if (signedOut) {
      return;
    }
    var before = route.view === "search" ? route.q : null;
    route = parseRoute();
    // The search box shows the search being looked at when it starts, and is emptied when one is
    // left. Anything else leaves it alone (a refresh, opening a result): what someone is typing
    // at that moment stays.
    var now = route.view === "search" ? route.q : null;
    if (now !== before) {
      $("q").value = now || "";
    }
    if (!route.inbox) {
      if (inboxes.length) {
        window.location.replace(href(inboxes[0].id, "messages"));
      }
      return;
    }
    renderInboxes();
    renderViews();
    var key = [route.inbox, route.view, route.q].join("|");
    if (key !== list.key) {
      loadList(key, true);
    } else {
      markCurrent();
    }
    loadDetail();
  }

  // ---------------------------------------------------------------- inboxes

  function loadInboxes() {
    return api("/inboxes").then(function (data) {
      inboxes = data.inboxes;
      if (!route.inbox) {
        go();
      } else {
        renderInboxes();
      }
    });
  }

  // The inbox list and the view links are rebuilt only when what they show changed: a refresh
  // replacing them under a click half done (mouse down on the old link, up on its copy) loses it.
  var shown = {inboxes: null, views: null};

  function renderInboxes() {
    var ul = $("inboxes");
    var signature = JSON.stringify([route.inbox, inboxes]);
    if (signature === shown.inboxes) {
      return;
    }
    shown.inboxes = signature;
    ul.textContent = "";
    if (!inboxes.length) {
      ul.appendChild(el("li", {className: "empty", text: "No inboxes yet. An agent creates one with create_inbox."}));
      return;
    }
    inboxes.forEach(function (inbox) {
      var label = inbox.email + ": " + count(inbox.total, inbox.capped) + " messages, " +
        count(inbox.unread, inbox.capped) + " unread, " + inbox.drafts + " drafts";
      var link = el("a", {href: href(inbox.id, "messages"), "aria-label": label},
        el("span", {text: inbox.displayName ? inbox.displayName + " · " + inbox.email : inbox.email}),
        inbox.unread ? el("span", {text: " "}) : null,
        inbox.unread ? el("span", {className: "badge", "aria-hidden": "true", text: count(inbox.unread, inbox.capped)}) : null,
        el("span", {className: "counts", "aria-hidden": "true",
          text: count(inbox.total, inbox.capped) + " messages · " + count(inbox.unread, inbox.capped) + " unread · " +
            inbox.drafts + " drafts"}));
      if (inbox.id === route.inbox) {
        link.setAttribute("aria-current", "true");
      }
      ul.appendChild(el("li", {}, link));
    });
  }

  function renderViews() {
    var nav = $("views");
    var inbox = inboxes.filter(function (i) { return i.id === route.inbox; })[0];
    var signature = JSON.stringify([route.inbox, route.view, inbox ? inbox.drafts : null]);
    if (signature === shown.views) {
      return;
    }
    shown.views = signature;
    nav.textContent = "";
    VIEWS.forEach(function (view) {
      var text = view[1] + (view[0] === "drafts" && inbox && inbox.drafts ? " (" + inbox.drafts + ")" : "");
      var link = el("a", {href: href(route.inbox, view[0]), text: text});
      if (route.view === view[0]) {
        link.setAttribute("aria-current", "page");
      }
      nav.appendChild(link);
    });
  }

  // ---------------------------------------------------------------- the list pane

  function listUrl(after) {
    var cursor = after ? "&after=" + encodeURIComponent(after) : "";
    switch (route.view) {
      case "threads": return inboxPath("/threads?limit=50" + cursor);
      case "outbound": return inboxPath("/messages?direction=outbound&limit=50" + cursor);
      case "drafts": return inboxPath("/drafts");
      case "search": return inboxPath("/search?limit=50&q=" + encodeURIComponent(route.q) + cursor);
      default: return inboxPath("/messages?limit=50" + cursor);
    }
  }

  function listTitle() {
    switch (route.view) {
      case "threads": return "Threads";
      case "outbound": return "Outbound mail";
      case "drafts": return "Drafts awaiting approval";
      case "search": return "Search: " + route.q;
      default: return "Messages, newest first";
    }
  }

  function loadList(key, fresh) {
    var pane = $("list");
    var requested = [route.inbox, route.view, route.q].join("|");
    return api(listUrl(fresh ? null : list.next)).then(function (data) {
      if (requested !== [route.inbox, route.view, route.q].join("|")) {
        return;  // the person moved on while this loaded
      }
      var items = data.messages || data.threads || data.drafts || [];
      var seen = JSON.stringify(data);
      if (fresh && key === list.key && list.pages === 1 && seen === list.seen) {
        // A refresh (the live stream connecting, another inbox's mail) that found nothing new:
        // the rows stay as they are, so a click landing on one while this loaded is not lost.
        markCurrent();
        return;
      }
      var ul;
      if (fresh) {
        pane.textContent = "";
        pane.appendChild(el("h2", {id: "list-title", text: listTitle()}));
        ul = el("ul", {className: "items", id: "items"});
        pane.appendChild(ul);
        list = {key: key, pages: 1, next: data.next || null, seen: seen};
      } else {
        ul = $("items");
        list.pages += 1;
        list.next = data.next || null;
      }
      items.forEach(function (item) { ul.appendChild(listItem(item)); });
      if (fresh && !items.length) {
        ul.appendChild(el("li", {className: "empty", text: route.view === "search" ? "No message matches." : "Nothing here yet."}));
      }
      var old = $("more");
      if (old) {
        old.remove();
      }
      if (list.next) {
        pane.appendChild(el("button", {id: "more", type: "button", className: "more", text: "Older",
          onclick: function () { loadList(list.key, false); }}));
      }
      markCurrent();
    }, function (error) {
      pane.textContent = "";
      pane.appendChild(el("p", {className: "empty", text: "Could not load: " + error.message}));
    });
  }

  function listItem(item) {
    var view = route.view;
    var link;
    if (view === "threads") {
      link = el("a", {href: href(route.inbox, "threads", item.id)},
        el("span", {className: "subject", text: item.subject || "(no subject)"}),
        el("span", {className: "when", text: item.messageCount + " message" + (item.messageCount === 1 ? "" : "s") +
          " · " + when(item.lastMessageAt)}));
    } else if (view === "drafts") {
      link = el("a", {href: href(route.inbox, "drafts", item.id)},
        el("span", {className: "who", text: "To " + ((item.to || []).join(", ") || (item.replyToMessageId ? "the sender replied to" : "(nobody yet)"))}),
        el("span", {className: "subject", text: item.subject || "(no subject)"}),
        el("span", {className: "when", text: "changed " + when(item.updatedAt)}));
    } else {
      var outbound = item.direction === "outbound";
      link = el("a", {href: href(route.inbox, view, item.id, route.q)},
        el("span", {className: "who", text: outbound ? "To " + (item.to || []).join(", ") : sender(item)}),
        " ",
        outbound ? stateBadge(item.status) : null,
        item.tag ? el("span", {className: "tag", title: "addressed with +" + item.tag, text: "+" + item.tag}) : null,
        el("span", {className: "subject", text: item.subject || "(no subject)"}),
        item.snippet ? el("span", {className: "snippet", text: item.snippet}) : null,
        el("span", {className: "when", text: when(item.at) + (item.hasAttachments ? " · attachments" : "")}));
    }
    link.dataset.id = item.id;
    return el("li", {className: item.isRead === false && item.direction === "inbound" ? "unread" : ""}, link);
  }

  function markCurrent() {
    var links = document.querySelectorAll("#items a");
    Array.prototype.forEach.call(links, function (link) {
      if (link.dataset.id === route.item) {
        link.setAttribute("aria-current", "true");
      } else {
        link.removeAttribute("aria-current");
      }
    });
  }

  // ---------------------------------------------------------------- the detail pane

  function loadDetail() {
    var pane = $("detail");
    var key = [route.inbox, route.view, route.item].join("|");
    if (key === detail.key) {
      return;
    }
    detail = {key: key, review: null};
    pane.textContent = "";
    if (!route.item) {
      pane.appendChild(el("p", {className: "empty", text: route.view === "drafts"
        ? "Choose a draft to review it." : "Choose an item to see it here."}));
      return;
    }
    if (route.view === "drafts") {
      detail.review = window.MamDraftReview.mount(pane, draftAdapter(route.inbox, route.item), {onDone: afterDraft});
    } else if (route.view === "threads") {
      showThread(pane, route.item);
    } else {
      showMessage(pane, route.item);
    }
  }

  function reloadDetail() {
    detail.key = null;
    loadDetail();
  }

  function draftAdapter(inbox, draftId) {
    var path = "/inboxes/" + encodeURIComponent(inbox) + "/drafts/" + encodeURIComponent(draftId);
    function rejected(error) {
      var data = error.data || {};
      throw {code: error.code, message: error.message, state: data.draft ? data : null};
    }
    return {
      load: function () { return api(path).catch(rejected); },
      save: function (fields, updatedAt) {
        fields.baseUpdatedAt = updatedAt;
        return api(path, {method: "PATCH", body: fields}).catch(rejected);
      },
      approve: function (contentHash) {
        return api(path + "/approve", {method: "POST", body: {contentHash: contentHash}}).catch(rejected);
      },
      discard: function () { return api(path, {method: "DELETE"}).catch(rejected); }
    };
  }

  function afterDraft(outcome) {
    toast(outcome === "sent" ? "Approved and sent; it is in Outbound." : "Draft discarded.");
    refreshSoon();
  }

  function showThread(pane, threadId) {
    api(inboxPath("/threads/" + encodeURIComponent(threadId))).then(function (thread) {
      var ul = el("ul", {className: "items"});
      thread.messages.forEach(function (m) {
        var view = m.direction === "outbound" ? "outbound" : "messages";
        ul.appendChild(el("li", {}, el("a", {href: href(route.inbox, view, m.id)},
          el("span", {className: "who", text: m.direction === "outbound" ? "To " + m.to.join(", ") : sender(m)}),
          el("span", {className: "snippet", text: m.snippet}),
          el("span", {className: "when", text: when(m.at)}))));
      });
      pane.textContent = "";
      var heading = el("h2", {tabindex: "-1", text: thread.subject || "(no subject)"});
      pane.appendChild(heading);
      pane.appendChild(el("p", {className: "when", text: thread.messageCount + " message(s), oldest first"}));
      pane.appendChild(ul);
      heading.focus();
    }, function (error) {
      pane.appendChild(el("p", {className: "empty", text: "Could not load the thread: " + error.message}));
    });
  }

  function meta(pairs) {
    var dl = el("dl", {className: "meta"});
    pairs.forEach(function (pair) {
      if (pair[1] === null || pair[1] === undefined || pair[1] === "") {
        return;
      }
      dl.appendChild(el("dt", {text: pair[0]}));
      dl.appendChild(el("dd", {}, typeof pair[1] === "string" ? el("span", {text: pair[1]}) : pair[1]));
    });
    return dl;
  }

  function deliveryText(m) {
    var box = el("span", {}, stateBadge(m.status), " " + (STATES[m.status] || ""));
    var d = m.delivery || {};
    if (m.status === "queued" && d.nextAttemptAt) {
      box.appendChild(document.createTextNode("; next attempt " + when(d.nextAttemptAt)));
    }
    if (d.relayReply) {
      box.appendChild(el("span", {className: "relay-reply", text: "\nRelay's reply: " + d.relayReply}));
    }
    return box;
  }

  function extractedSection(m) {
    var found = m.extracted || {};
    var section = el("section", {className: "extracted", "aria-labelledby": "extracted-title"},
      el("h3", {id: "extracted-title", text: "What wait_for_email would hand the agent"}));
    if (found.code) {
      section.appendChild(el("p", {}, "Code: ", el("span", {className: "code", text: found.code})));
    }
    if (found.links && found.links.length) {
      var ul = el("ul", {});
      found.links.forEach(function (url) {
        var safe = /^https?:\/\//i.test(url);
        ul.appendChild(el("li", {}, safe
          ? el("a", {href: url, target: "_blank", rel: "noopener noreferrer", text: url})
          : el("span", {text: url})));
      });
      section.appendChild(el("p", {text: "Links, best first:"}));
      section.appendChild(ul);
    }
    if (!found.code && !(found.links && found.links.length)) {
      section.appendChild(el("p", {className: "empty", text: "No code and no link."}));
    }
    return section;
  }

  // The mail frame: its src is a navigation (kept in the browser's history), so it carries a
  // one-use ticket the page asks for with its key, never the key; a new view is a new frame.
  function mailFrame(path, images) {
    var frame = el("iframe", {
      className: "mail-frame",
      title: "HTML body of the message",
      sandbox: "allow-popups allow-popups-to-escape-sandbox",
      referrerpolicy: "no-referrer"
    });
    api(path + "/frame", {method: "POST", body: {images: images}}).then(function (data) {
      frame.src = data.src;
    }, function (error) { toast("Could not show the HTML: " + error.message); });
    return frame;
  }

  function htmlSection(m, path) {
    var frame = mailFrame(path, false);
    var note = el("p", {className: "blocked-note"},
      "Shown without scripts or forms; remote images and other remote content are blocked. ");
    var load = el("button", {type: "button", text: "Load remote images", onclick: function () {
      var withImages = mailFrame(path, true);
      frame.replaceWith(withImages);
      frame = withImages;
      load.remove();
      note.appendChild(document.createTextNode("Remote images loaded (the sender can see that you opened it)."));
    }});
    note.appendChild(load);
    return el("section", {"aria-label": "HTML body"}, el("h3", {text: "HTML"}), note, frame);
  }

  function showMessage(pane, messageId) {
    var path = inboxPath("/messages/" + encodeURIComponent(messageId));
    api(path).then(function (m) {
      pane.textContent = "";
      var outbound = m.direction === "outbound";
      var article = el("article", {className: "message"});
      article.appendChild(el("h2", {tabindex: "-1", text: m.subject || "(no subject)"}));
      article.appendChild(meta([
        ["From", sender(m)],
        ["To", (m.to || []).join(", ")],
        ["Cc", (m.cc || []).join(", ")],
        ["Bcc", (m.bcc || []).join(", ")],
        ["Date", when(m.sentAt || m.at)],
        outbound ? ["State", deliveryText(m)] : ["Received", when(m.receivedAt)]
      ]));
      var toolbar = el("div", {className: "toolbar"});
      if (!outbound) {
        toolbar.appendChild(el("button", {type: "button", text: m.isRead ? "Mark as unread" : "Mark as read",
          onclick: function () {
            api(path, {method: "PATCH", body: {isRead: !m.isRead}}).then(function () {
              toast(m.isRead ? "Marked as unread." : "Marked as read.");
              reloadDetail();
              refreshSoon();
            }, function (error) { toast(error.message); });
          }}));
      }
      toolbar.appendChild(downloadLink(path + "/raw", m.id + ".eml", "Download .eml"));
      toolbar.appendChild(el("button", {type: "button", text: "Delete", onclick: function () {
        api(path, {method: "DELETE"}).then(function () {
          toast("Deleted.");
          window.location.hash = href(route.inbox, route.view, null, route.q);
          refreshSoon();
        }, function (error) { toast(error.message); });
      }}));
      article.appendChild(toolbar);
      if (!outbound) {
        article.appendChild(extractedSection(m));
      }
      if (m.hasHtml) {
        article.appendChild(htmlSection(m, path));
      }
      var text = el("details", {open: m.hasHtml ? null : "open"},
        el("summary", {text: m.hasHtml ? "Plain text" : "Text"}),
        el("pre", {className: "body-text", text: m.text || "(empty)"}));
      article.appendChild(text);
      if (m.attachments.length) {
        var files = el("ul", {});
        m.attachments.forEach(function (a) {
          files.appendChild(el("li", {},
            downloadLink(path + "/attachments/" + encodeURIComponent(a.id), a.filename, a.filename),
            " (" + a.contentType + ", " + a.size + " bytes)"));
        });
        article.appendChild(el("h3", {text: "Attachments"}));
        article.appendChild(files);
      }
      var table = el("table", {className: "headers"});
      m.headers.forEach(function (pair) {
        table.appendChild(el("tr", {}, el("th", {scope: "row", text: pair[0]}), el("td", {text: pair[1]})));
      });
      article.appendChild(el("details", {}, el("summary", {text: "Headers (" + m.headers.length + ")"}), table));
      pane.appendChild(article);
      article.querySelector("h2").focus();  // keyboard and screen-reader users land on what they opened
    }, function (error) {
      pane.textContent = "";
      pane.appendChild(el("p", {className: "empty", text: error.status === 404
        ? "This message is gone (deleted)." : "Could not load the message: " + error.message}));
    });
  }

  // ---------------------------------------------------------------- live updates

  var live = {source: null};

  function refreshSoon(what) {
    window.clearTimeout(refreshTimer);
    refreshTimer = window.setTimeout(function () { refresh(what || {}); }, 150);
  }

  function refresh(what) {
    var loads = [loadInboxes().then(renderViews)];
    if (route.inbox) {
      loads.push(refreshPanes(what));
    }
    // `data-refreshes` on the body counts the refreshes fully handled (their answers shown or
    // kept), so a test can tell one was dealt with without guessing how long that takes.
    var done = function () {
      document.body.dataset.refreshes = String((Number(document.body.dataset.refreshes) || 0) + 1);
    };
    Promise.all(loads).then(done, done);
  }

  function refreshPanes(what) {
    var loading = null;
    var listShows = what.inboxId === undefined || what.inboxId === route.inbox;
    if (listShows && route.view !== "search") {
      if (list.pages <= 1) {
        loading = loadList(list.key, true);
      } else if (!$("newer")) {
        var pane = $("list");
        pane.insertBefore(el("button", {id: "newer", type: "button", className: "more", text: "Show new mail",
          onclick: function () { loadList(list.key, true); }}), pane.children[1] || null);
      }
    }
    if (what.changed && detail.review && !detail.review.isDirty()) {
      detail.review.refresh();
    } else if (what.changed && route.view === "outbound" && route.item) {
      reloadDetail();
    }
    return loading;
  }

  function connect() {
    var status = $("live");
    var streamKey = pageKey();
    var source = new EventSource(keyed(base + "/api/events"));
    live.source = source;
    source.addEventListener("hello", function () {
      status.textContent = "live";
      status.className = "live on";
      refreshSoon();
    });
    source.addEventListener("mail", function (event) {
      var data = JSON.parse(event.data);
      if (data.type === "message.received") {
        toast("New mail arrived.");
      }
      refreshSoon({inboxId: data.inboxId});
    });
    source.addEventListener("changed", function () { refreshSoon({changed: true}); });
    source.addEventListener("reset", function () { refreshSoon(); });
    source.addEventListener("signed-out", function () {
      source.close();
      showSignedOut(streamKey);
    });
    source.onerror = function () {
      status.textContent = "reconnecting…";
      status.className = "live off";
      if (source.readyState === EventSource.CLOSED) {
        // Refused (signed out, or the daemon restarted): the API call says which.
        window.setTimeout(function () { loadInboxes().then(connect, function () {}); }, 2000);
      }
    };
  }

  // ---------------------------------------------------------------- keyboard and controls

  function moveSelection(step) {
    var links = Array.prototype.slice.call(document.querySelectorAll("#items a"));
    if (!links.length) {
      return;
    }
    var index = links.findIndex(function (a) { return a.dataset.id === route.item; });
    var next = links[Math.max(0, Math.min(links.length - 1, index + step))];
    next.focus();
    window.location.hash = next.getAttribute("href");
  }

  document.addEventListener("keydown", function (event) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if (typing || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    if (event.key === "/") {
      event.preventDefault();
      $("q").focus();
    } else if (event.key === "j") {
      moveSelection(1);
    } else if (event.key === "k") {
      moveSelection(-1);
    }
  });

  $("search").addEventListener("submit", function (event) {
    event.preventDefault();
    var q = $("q").value.trim();
    if (route.inbox) {
      window.location.hash = q ? href(route.inbox, "search", null, q) : href(route.inbox, "messages");
    }
  });

  $("signout").addEventListener("click", function () {
    var key = pageKey();
    fetch(base + "/logout", {method: "POST", credentials: "same-origin", headers: {"X-Console-Key": key}})
      .then(function () { showSignedOut(key); }, function () { showSignedOut(key); });
  });

  window.addEventListener("hashchange", go);
  loadInboxes().then(function () {
    go();
    connect();
  }, function (error) {
    if (!signedOut) {
      $("list").textContent = "Could not reach the local backend: " + error.message;
    }
  });
})();
