/* The console's sign-in step: the one-time link's answer carries the session's page key in a meta
 * tag (never in a URL: URLs end up in the browser's history). Keep it in this origin's storage, where
 * the console reads it and a page on another port (another origin) cannot, then open the console.
 */
(function () {
  "use strict";
  var base = document.querySelector('meta[name="mam-base"]').content;
  var key = document.querySelector('meta[name="mam-page-key"]').content;
  try {
    window.localStorage.setItem("mam-console-key:" + base, key);
  } catch (error) {
    document.body.textContent = "This browser does not let the console keep its session (site storage is blocked).";
    return;
  }
  window.location.replace(base + "/");
})();
