// tripwire's page: Ctrl+Enter (or Cmd+Enter) in the SQL editor runs the
// query, and a form with data-confirm asks before it is sent.
"use strict";
document.addEventListener("keydown", function (event) {
  var target = event.target;
  if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
  if (!target.matches || !target.matches("textarea[data-submit]") || !target.form) return;
  event.preventDefault();
  if (target.form.requestSubmit) target.form.requestSubmit();
  else target.form.submit();
});
document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});
