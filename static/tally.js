// Tally: small progressive enhancements. Every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // The range picker: choosing a preset applies it at once; dates only matter for "custom".
  for (const form of document.querySelectorAll("form.picker")) {
    const select = form.querySelector("select[name=range]");
    const dates = form.querySelectorAll("input[type=date]");
    const sync = () => dates.forEach((d) => { d.disabled = select.value !== "custom"; });
    sync();
    select.addEventListener("change", () => { sync(); if (select.value !== "custom") form.submit(); });
  }
});
