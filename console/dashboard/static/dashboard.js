// Lamplighter dashboard: the one script (pages work without it). It checks the redrive form's
// JSON as it is typed; the server checks it again before anything is sent to the queue.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-json-editor]").forEach(function (form) {
    var area = form.querySelector("textarea");
    var status = form.querySelector(".json-status");
    var button = form.querySelector("button");
    function check() {
      var problem = null;
      try {
        var value = JSON.parse(area.value);
        if (value === null || typeof value !== "object" || Array.isArray(value)) {
          problem = 'a JSON object with "args" and/or "kwargs"';
        } else if ("args" in value && !Array.isArray(value.args)) {
          problem = '"args" must be a list';
        } else if ("kwargs" in value && (value.kwargs === null || typeof value.kwargs !== "object" || Array.isArray(value.kwargs))) {
          problem = '"kwargs" must be an object';
        } else if (Object.keys(value).some(function (k) { return k !== "args" && k !== "kwargs"; })) {
          problem = 'only "args" and "kwargs"';
        }
      } catch (e) {
        problem = "not valid JSON: " + e.message;
      }
      status.textContent = problem ? problem : "valid JSON";
      status.className = "json-status " + (problem ? "bad" : "ok");
      button.disabled = !!problem;
    }
    area.addEventListener("input", check);
    check();
  });
});
