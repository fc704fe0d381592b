/* The draft review as an MCP App view: the host renders this page next to a create_draft or
 * update_draft result and relays JSON-RPC over postMessage (the MCP Apps extension). The view
 * shows the draft with the shared review (draft_review.js) and acts through the server's tools:
 * review_draft and approve_draft (visible to this view only, never to the model), update_draft and
 * delete_draft. Without a host it waits and does nothing.
 */
(function () {
  "use strict";

  var PROTOCOL_VERSION = "2026-01-26";
  var pending = {};
  var nextId = 1;
  var mounted = null;
  var root = document.getElementById("review");

  function send(message) {
    window.parent.postMessage(message, "*");
  }

  function request(method, params) {
    var id = nextId++;
    return new Promise(function (resolve, reject) {
      pending[id] = {resolve: resolve, reject: reject};
      send({jsonrpc: "2.0", id: id, method: method, params: params});
    });
  }

  function notify(method, params) {
    send({jsonrpc: "2.0", method: method, params: params || {}});
  }

  function textOf(result) {
    return (result.content || []).filter(function (part) { return part.type === "text"; })
      .map(function (part) { return part.text; }).join("\n");
  }

  // A tool's structured result, or a rejection {code, message, state} like the console's adapter.
  function callTool(name, args) {
    return request("tools/call", {name: name, arguments: args}).then(function (result) {
      var data = result.structuredContent || {};
      if (result.isError) {
        var error = data.error || {};
        throw {code: error.code, message: error.message || textOf(result)};
      }
      return data;
    }, function (error) {
      throw {code: "HOST_ERROR", message: (error && error.message) || "the host refused the call"};
    });
  }

  function adapter(inboxId, draftId) {
    var ids = {inbox_id: inboxId, draft_id: draftId};
    function load() {
      return callTool("review_draft", ids);
    }
    return {
      load: load,
      save: function (fields, updatedAt) {
        // update_draft has no revision check: look first, so another change is not overwritten unseen.
        return load().then(function (current) {
          if (current.draft.updatedAt !== updatedAt) {
            throw {code: "DRAFT_CHANGED", message: "The draft changed since you opened it; nothing was saved.", state: current};
          }
          var args = {inbox_id: inboxId, draft_id: draftId, to: fields.to, cc: fields.cc, bcc: fields.bcc,
            subject: fields.subject, body: fields.plainBody};
          if (fields.htmlBody) {
            args.html_body = fields.htmlBody;
          }
          return callTool("update_draft", args);
        }).then(load);
      },
      approve: function (contentHash) {
        return callTool("approve_draft", {inbox_id: inboxId, draft_id: draftId, content_hash: contentHash})
          .then(function (data) {
            if (!data.approved) {
              throw {code: data.code, message: data.message, state: data.draft ? data : null};
            }
            return {sent: {id: data.id, status: data.status}};
          });
      },
      discard: function () {
        return callTool("delete_draft", ids);
      }
    };
  }

  function show(data) {
    var draftId = data && (data.draft_id || data.id);
    var inboxId = data && data.inbox_id;
    if (!draftId || !inboxId || mounted === draftId) {
      return;
    }
    mounted = draftId;
    window.MamDraftReview.mount(root, adapter(inboxId, draftId), {
      focus: false,
      onDone: function (outcome, sent) {
        var text = outcome === "sent"
          ? "The person approved draft " + draftId + "; it was sent as message " + ((sent && sent.id) || "") + "."
          : "The person discarded draft " + draftId + "; nothing was sent.";
        request("ui/update-model-context", {content: [{type: "text", text: text}]}).catch(function () {});
      }
    });
  }

  window.addEventListener("message", function (event) {
    if (event.source !== window.parent) {
      return;
    }
    var message = event.data;
    if (!message || message.jsonrpc !== "2.0") {
      return;
    }
    if (message.method === undefined && message.id !== undefined && pending[message.id]) {
      var waiter = pending[message.id];
      delete pending[message.id];
      if (message.error) {
        waiter.reject(message.error);
      } else {
        waiter.resolve(message.result);
      }
      return;
    }
    if (message.method === "ui/notifications/tool-result") {
      show((message.params || {}).structuredContent);
    } else if (message.method === "ui/notifications/tool-input") {
      var args = (message.params || {}).arguments || {};
      if (args.draft_id) {
        show(args);
      }
    } else if (message.method === "ui/resource-teardown" && message.id !== undefined) {
      send({jsonrpc: "2.0", id: message.id, result: {}});
    } else if (message.id !== undefined && message.method) {
      send({jsonrpc: "2.0", id: message.id, error: {code: -32601, message: "not supported by this view"}});
    }
  });

  if (window.ResizeObserver) {
    new ResizeObserver(function () {
      notify("ui/notifications/size-changed", {
        width: document.documentElement.scrollWidth,
        height: document.documentElement.scrollHeight
      });
    }).observe(document.documentElement);
  }

  if (window.parent !== window) {
    request("ui/initialize", {
      protocolVersion: PROTOCOL_VERSION,
      appInfo: {name: "mam-mcp draft review", version: "1"},
      appCapabilities: {}
    }).then(function () {
      notify("ui/notifications/initialized");
    }, function () {
      root.textContent = "This host did not start the review view.";
    });
  }
})();
