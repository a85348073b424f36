// Progressive enhancement for the incidents UI. Every action works without this file:
// it only adds an "Add another action item" button to the post-mortem form and a Print button
// to the post-mortem document, and shows the close form's "Duplicate of" field only while
// "Duplicate" is chosen. Loaded from our own origin (CSP: script-src 'self').
(function () {
  "use strict";

  function enhanceActionItems() {
    var rows = document.querySelector("[data-formset='actions']");
    var template = document.getElementById("action-item-template");
    var total = document.getElementById("id_actions-TOTAL_FORMS");
    var max = document.getElementById("id_actions-MAX_NUM_FORMS");
    if (!rows || !template || !total) {
      return;
    }
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = "Add another action item";
    button.addEventListener("click", function () {
      var index = parseInt(total.value, 10);
      if (max && index >= parseInt(max.value, 10)) {
        return;
      }
      var html = template.innerHTML
        .replace(/__prefix__/g, String(index))
        .replace(/Action item new/g, "Action item " + (index + 1));
      var holder = document.createElement("div");
      holder.innerHTML = html.trim();
      var row = holder.firstElementChild;
      rows.appendChild(row);
      total.value = String(index + 1);
      var first = row.querySelector("input, select");
      if (first) {
        first.focus();
      }
    });
    rows.parentNode.insertBefore(button, rows.nextSibling);
  }

  function enhancePrint() {
    var buttons = document.querySelectorAll(".print-button");
    Array.prototype.forEach.call(buttons, function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        window.print();
      });
    });
  }

  function enhanceCloseForm() {
    var form = document.querySelector("#close form");
    var input = document.getElementById("close_duplicate_of");
    if (!form || !input || !input.closest) {
      return;
    }
    var field = input.closest(".field");
    function update() {
      var chosen = form.querySelector("input[name='resolution']:checked");
      var duplicate = chosen !== null && chosen.value === "duplicate";
      field.style.display = duplicate || input.value ? "" : "none";
    }
    form.addEventListener("change", update);
    update();
  }

  enhanceActionItems();
  enhancePrint();
  enhanceCloseForm();
})();
