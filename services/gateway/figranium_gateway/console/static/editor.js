// The task editor, enhanced: changing an action's type swaps its fields for the palette's
// fields of the new type at once, and Alt+ArrowUp/Down moves an action. Without script
// the form's buttons do both through the server.

const form = document.querySelector("form.editor");

function paletteByType(palette) {
  const byType = new Map();
  for (const action of palette.actions) for (const type of action.types) byType.set(type, action);
  return byType;
}

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  if (text) node.textContent = text;
  return node;
}

function currentValues(fieldset) {
  const values = new Map();
  for (const input of fieldset.querySelectorAll(".fields [name]")) {
    const field = input.name.replace(/^actions-\d+-/, "");
    values.set(field, input.type === "checkbox" ? input.checked : input.value);
  }
  return values;
}

function fieldControl(field, id, name, value, help) {
  if (field.kind === "select") {
    const select = element("select", { id, name, "aria-describedby": help });
    select.append(element("option", { value: "" }, "(default)"));
    for (const option of field.options || []) {
      select.append(element("option", { selected: option === value }, option));
    }
    return select;
  }
  if (field.kind === "json") {
    const area = element("textarea", { id, name, rows: "3", "aria-describedby": help });
    area.value = typeof value === "string" ? value : "";
    return area;
  }
  const input = element("input", { id, name, "aria-describedby": help });
  if (field.kind === "number") {
    input.type = "number";
    input.step = "any";
  }
  input.value = typeof value === "string" ? value : "";
  return input;
}

function renderFields(fieldset, action) {
  const index = fieldset.dataset.index;
  const values = currentValues(fieldset);
  const holder = fieldset.querySelector(".fields");
  holder.replaceChildren();
  for (const field of action.fields) {
    const id = `a${index}-${field.name}`;
    const name = `actions-${index}-${field.name}`;
    const help = `${id}-help`;
    const value = values.get(field.name);
    if (field.kind === "boolean") {
      const box = element("div", { class: "check field" });
      const checked = value === undefined ? field.default === true : value === true;
      box.append(element("input", { id, name, type: "checkbox", checked, "aria-describedby": help }));
      box.append(element("label", { for: id }, field.name));
      holder.append(box);
    } else {
      const box = element("div", { class: "field" });
      box.append(element("label", { for: id }, field.name + (field.required ? " (required)" : "")));
      box.append(fieldControl(field, id, name, value, help));
      holder.append(box);
    }
    holder.append(element("p", { class: "note hint", id: help }, field.description));
  }
  fieldset.querySelector(".action-label").textContent = action.label;
}

function renumber(list) {
  const items = [...list.children];
  items.forEach((item, n) => {
    const fieldset = item.querySelector("fieldset.action");
    fieldset.dataset.index = String(n);
    fieldset.querySelector(".action-number").textContent = String(n + 1);
    for (const node of [fieldset, ...fieldset.querySelectorAll("*")]) {
      for (const attribute of ["id", "name", "for", "aria-describedby"]) {
        const value = node.getAttribute(attribute);
        if (value === null) continue;
        node.setAttribute(attribute, value
          .replace(/\bactions-\d+-/g, `actions-${n}-`)
          .replace(/\ba\d+-/g, `a${n}-`)
          .replace(/\baction-\d+\b/g, `action-${n}`));
      }
      if (node.tagName === "BUTTON" && /^(up|down|remove):\d+$/.test(node.value)) {
        node.value = node.value.replace(/\d+$/, String(n));
        node.setAttribute("aria-label", node.getAttribute("aria-label").replace(/action \d+/, `action ${n + 1}`));
      }
    }
  });
}

function move(list, item, step) {
  const other = step < 0 ? item.previousElementSibling : item.nextElementSibling;
  if (!other) return false;
  if (step < 0) other.before(item);
  else other.after(item);
  renumber(list);
  return true;
}

if (form) {
  const byType = paletteByType(JSON.parse(form.dataset.palette));
  const list = form.querySelector("ol.actions");
  const status = form.querySelector("#actions-status");
  form.addEventListener("change", (event) => {
    const select = event.target.closest("select[data-action-type]");
    const action = select && byType.get(select.value);
    if (action) renderFields(select.closest("fieldset.action"), action);
  });
  form.addEventListener("keydown", (event) => {
    if (!event.altKey || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
    const item = event.target.closest("ol.actions > li");
    if (!item) return;
    event.preventDefault();
    const focused = document.activeElement;
    if (move(list, item, event.key === "ArrowUp" ? -1 : 1)) {
      focused.focus();
      const position = [...list.children].indexOf(item) + 1;
      status.textContent = `Moved to position ${position} of ${list.children.length}.`;
    }
  });
}
