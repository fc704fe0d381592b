/* Draft review: read a draft exactly as it would be sent, edit it, approve it or discard it.
 *
 * Shared by the console (its adapter talks to the console's JSON API) and the MCP App view (its
 * adapter calls the server's tools through the host). Approval names the content hash of the preview
 * on screen, so what is sent is exactly what the person read; when the draft changed meanwhile the
 * adapter rejects with code CONTENT_CHANGED and the new version, which is shown instead.
 *
 *   MamDraftReview.mount(container, adapter, {onDone}) -> {refresh(), isDirty()}
 *   adapter.load()                    -> Promise<{draft, preview, problem}>
 *   adapter.save(fields, updatedAt)   -> Promise<{draft, preview, problem}>
 *   adapter.approve(contentHash)      -> Promise<{sent: {...}}>
 *   adapter.discard()                 -> Promise<void>
 *   A rejection is {code, message, state?}; `state` is the draft's current {draft, preview, problem}.
 *
 * Everything from the draft is set as text (textContent, input values): never as markup.
 */
(function (global) {
  "use strict";

  var idCounter = 0;

  function el(tag, attrs) {
    var node = document.createElement(tag);
    var key;
    for (key in attrs || {}) {
      if (!Object.prototype.hasOwnProperty.call(attrs, key) || attrs[key] === null || attrs[key] === undefined) {
        continue;
      }
      if (key === "text") {
        node.textContent = attrs[key];
      } else if (key === "className") {
        node.className = attrs[key];
      } else if (key.slice(0, 2) === "on") {
        node.addEventListener(key.slice(2), attrs[key]);
      } else {
        node.setAttribute(key, attrs[key]);
      }
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) {
        continue;
      }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function uid(name) {
    idCounter += 1;
    return "dr-" + name + "-" + idCounter;
  }

  function when(iso) {
    var date = new Date(iso || "");
    return isNaN(date.getTime()) ? (iso || "") : date.toLocaleString();
  }

  function splitAddresses(text) {
    return text.split(/[,;\n]/).map(function (part) { return part.trim(); }).filter(Boolean);
  }

  function people(list, fresh) {
    var isNew = {};
    (fresh || []).forEach(function (a) { isNew[a.toLowerCase()] = true; });
    var out = el("span", {});
    (list || []).forEach(function (address, index) {
      if (index) {
        out.appendChild(document.createTextNode(", "));
      }
      out.appendChild(el("span", {text: address}));
      if (isNew[address.toLowerCase()]) {
        out.appendChild(el("strong", {className: "dr-new", text: " (new: never wrote to this inbox)"}));
      }
    });
    if (!list || !list.length) {
      out.textContent = "(none)";
    }
    return out;
  }

  function field(label, value) {
    return [el("dt", {text: label}), el("dd", {}, value)];
  }

  function mount(container, adapter, options) {
    options = options || {};
    var state = null;
    var dirty = false;
    var busy = false;
    var confirming = false;  // a pending "send?" question is not swapped for a newer draft under the person
    var finished = false;  // sent or discarded: nothing left to refresh
    var notice = el("div", {className: "dr-notice", role: "alert"});
    var body = el("div", {className: "dr-body"});
    container.textContent = "";
    container.appendChild(el("section", {className: "draft-review", "aria-label": "Draft review"}, notice, body));

    function say(text, kind) {
      notice.textContent = text || "";
      notice.className = "dr-notice" + (kind ? " dr-" + kind : "");
    }

    function fail(error) {
      busy = false;
      if (error && error.state) {
        state = error.state;
        dirty = false;
        render();
      }
      say((error && error.message) || String(error), "error");
    }

    function preview(p) {
      var list = el("dl", {className: "dr-fields"});
      [].concat(
        field("From", el("span", {text: p.fromName ? p.fromName + " <" + p.from + ">" : p.from})),
        field("To", people(p.to, p.newRecipients)),
        p.cc && p.cc.length ? field("Cc", people(p.cc, p.newRecipients)) : [],
        p.bcc && p.bcc.length ? field("Bcc", people(p.bcc, p.newRecipients)) : [],
        field("Subject", el("span", {text: p.subject || "(no subject)"})),
        p.inReplyTo ? field("In reply to", el("span", {text: p.inReplyTo})) : [],
        p.attachments && p.attachments.length
          ? field("Attachments", el("span", {text: p.attachments.map(function (a) { return a.filename; }).join(", ")}))
          : []
      ).forEach(function (node) { list.appendChild(node); });
      var parts = [list, el("pre", {className: "dr-text", text: p.plainBody || "(no plain-text body)"})];
      if (p.htmlBody) {
        var frame = el("iframe", {
          className: "dr-html",
          title: "HTML version of the draft",
          sandbox: "",
          referrerpolicy: "no-referrer"
        });
        frame.srcdoc = p.htmlBody;
        parts.push(el("p", {className: "dr-hint", text: "HTML version (shown without scripts or remote content):"}), frame);
      }
      parts.push(el("p", {className: "dr-hint", text: "Approval sends exactly this message (" + p.contentHash.slice(0, 12) + ")."}));
      var section = el("section", {className: "dr-preview", "aria-label": "Exactly what will be sent"},
        el("h3", {text: "Exactly what will be sent"}));
      parts.forEach(function (part) { section.appendChild(part); });
      return section;
    }

    function input(name, label, value, multiline) {
      var id = uid(name);
      var control = multiline
        ? el("textarea", {id: id, name: name, rows: name === "htmlBody" ? "4" : "8"})
        : el("input", {id: id, name: name, type: "text", autocomplete: "off"});
      control.value = value || "";
      control.addEventListener("input", function () {
        if (!dirty) {
          dirty = true;
          renderActions();
        }
      });
      return el("p", {className: "dr-field"}, el("label", {for: id, text: label}), control);
    }

    var actions = el("div", {className: "dr-actions"});
    var form = null;
    var saveButton = null;

    function renderActions() {
      confirming = false;
      actions.textContent = "";
      var canApprove = state && state.preview && !dirty && !busy;
      if (saveButton) {
        saveButton.disabled = !dirty || busy;
      }
      var approve = el("button", {
        type: "button",
        className: "dr-approve",
        text: "Approve and send",
        disabled: canApprove ? null : "disabled",
        onclick: function () { confirmStep("send"); }
      });
      actions.appendChild(approve);
      actions.appendChild(el("button", {
        type: "button",
        className: "dr-discard",
        text: "Discard",
        disabled: busy ? "disabled" : null,
        onclick: function () { confirmStep("discard"); }
      }));
      if (dirty) {
        actions.appendChild(el("p", {className: "dr-hint", text: "Save your changes first: approval sends the version shown above."}));
      } else if (state && !state.preview) {
        actions.appendChild(el("p", {className: "dr-hint", text: "This draft cannot be sent yet: " + (state.problem || "it is incomplete") + "."}));
      }
    }

    function confirmStep(what) {
      actions.textContent = "";
      confirming = true;
      var count = state && state.preview
        ? (state.preview.to.length + (state.preview.cc || []).length + (state.preview.bcc || []).length) : 0;
      var question = what === "send"
        ? "Send this message to " + count + " recipient" + (count === 1 ? "" : "s") + " now?"
        : "Discard this draft? Nothing will be sent.";
      var yes = el("button", {
        type: "button",
        className: what === "send" ? "dr-approve" : "dr-discard",
        text: what === "send" ? "Yes, send it" : "Yes, discard it",
        onclick: function () { return what === "send" ? approve() : discard(); }
      });
      actions.appendChild(el("p", {className: "dr-question", text: question}));
      actions.appendChild(yes);
      actions.appendChild(el("button", {type: "button", text: "Cancel", onclick: renderActions}));
      yes.focus();
    }

    function approve() {
      busy = true;
      renderActions();
      say("Sending…");
      adapter.approve(state.preview.contentHash).then(function (result) {
        busy = false;
        finished = true;
        var sent = result.sent || {};
        body.textContent = "";
        body.appendChild(el("p", {className: "dr-done", text: "Approved: sent as message " + (sent.id || "") +
          " (status " + (sent.status || "sent") + ")."}));
        say("");
        if (options.onDone) {
          options.onDone("sent", sent);
        }
      }, fail);
    }

    function discard() {
      busy = true;
      renderActions();
      adapter.discard().then(function () {
        busy = false;
        finished = true;
        body.textContent = "";
        body.appendChild(el("p", {className: "dr-done", text: "Discarded: nothing was sent."}));
        say("");
        if (options.onDone) {
          options.onDone("discarded", null);
        }
      }, fail);
    }

    function save(event) {
      event.preventDefault();
      var values = {
        to: splitAddresses(form.elements.to.value),
        cc: splitAddresses(form.elements.cc.value),
        bcc: splitAddresses(form.elements.bcc.value),
        subject: form.elements.subject.value,
        plainBody: form.elements.plainBody.value,
        htmlBody: form.elements.htmlBody.value || null
      };
      busy = true;
      say("Saving…");
      adapter.save(values, state.draft.updatedAt).then(function (next) {
        busy = false;
        state = next;
        dirty = false;
        render();
        say("Saved. Review the message above, then approve it.", "ok");
      }, fail);
    }

    function render() {
      body.textContent = "";
      if (!state) {
        return;
      }
      var d = state.draft;
      var heading = el("h2", {tabindex: "-1", text: "Draft " + (d.subject ? "“" + d.subject + "”" : "(no subject)")});
      body.appendChild(heading);
      body.appendChild(el("p", {className: "dr-hint", text: "Last changed " + when(d.updatedAt || d.createdAt) +
        (d.replyToMessageId ? " · a reply in its thread" : "")}));
      if (state.preview) {
        body.appendChild(preview(state.preview));
      } else {
        body.appendChild(el("p", {className: "dr-problem", text: "Not sendable yet: " + (state.problem || "incomplete")}));
      }
      body.appendChild(actions);
      saveButton = el("button", {type: "submit", text: "Save changes"});
      form = el("form", {className: "dr-form", "aria-label": "Edit the draft", onsubmit: save},
        input("to", "To (comma-separated)", (d.to || []).join(", ")),
        input("cc", "Cc", (d.cc || []).join(", ")),
        input("bcc", "Bcc", (d.bcc || []).join(", ")),
        input("subject", "Subject", d.subject),
        input("plainBody", "Body (plain text)", d.plainBody, true),
        input("htmlBody", "HTML body (optional)", d.htmlBody, true),
        el("div", {className: "dr-actions"}, saveButton));
      body.appendChild(el("details", {className: "dr-edit", open: dirty || !state.preview ? "open" : null},
        el("summary", {text: "Edit the draft"}), form));
      renderActions();
    }

    function refresh() {
      if (finished) {
        return Promise.resolve();
      }
      return adapter.load().then(function (next) {
        var changed = state && next.draft.updatedAt !== state.draft.updatedAt;
        if (changed && dirty) {
          say("This draft changed while you were editing it; saving your edits will be refused. ", "error");
          notice.appendChild(el("button", {type: "button", text: "Show the new version (drops your edits)", onclick: function () {
            dirty = false;
            refresh();
          }}));
          return;
        }
        state = next;
        render();
        if (changed) {
          say("This draft changed; the new version is shown.", "info");
        }
      }, fail);
    }

    refresh().then(function () {
      var heading = container.querySelector("h2");
      if (heading && options.focus !== false) {
        heading.focus();
      }
    });
    return {
      refresh: refresh,
      isDirty: function () { return dirty || confirming || busy; }
    };
  }

  global.MamDraftReview = {mount: mount, el: el};
})(window);
