/* Accessible names for the sliders of the book's interactive figures (bnlib.widgets).
 *
 * ipywidgets draws a slider's description as a visible label beside it, but the slider handle
 * itself (role="slider", the element that takes the keyboard focus) gets no accessible name,
 * so a screen reader announces only "slider, 8". Each handle is named after its label and what
 * it changes, e.g. "batch size m, changes the figure below". The widgets render after the page
 * loads, so handles are named as they appear.
 */
(function () {
  "use strict";
  function nameSliders() {
    document.querySelectorAll(".widget-slider [role=slider]:not([aria-label])").forEach(function (handle) {
      var label = handle.closest(".widget-slider").querySelector(".widget-label");
      var text = label ? label.textContent.trim() : "";
      if (text) {
        handle.setAttribute("aria-label", text + ", changes the figure below");
      }
    });
  }
  function start() {
    nameSliders();
    new MutationObserver(nameSliders).observe(document.body, {childList: true, subtree: true});
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
