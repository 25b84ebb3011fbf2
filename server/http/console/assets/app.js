// The console's shell: the key box, the navigation, and a hash router (#/tasks,
// #/task/NAME, #/jobs, #/job/ID, #/health). Each page renders into <main> and returns a
// function that stops its polls and streams when the user leaves it.

import { key } from "./api.js";
import { clear } from "./dom.js";
import * as health from "./pages/health.js";
import * as job from "./pages/job.js";
import * as jobs from "./pages/jobs.js";
import * as task from "./pages/task.js";
import * as tasks from "./pages/tasks.js";

const ROUTES = { tasks, task, jobs, job, health };
let leave = () => {};

function route() {
  const [, page = "tasks", ...rest] = (location.hash || "#/tasks").split("/");
  const module = ROUTES[page] || tasks;
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  leave();
  const main = clear(document.getElementById("main"));
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === page || a.dataset.page === `${page}s`); // #/job/ID: Jobs
  }
  leave = module.render(main, arg) || (() => {});
}

function showKeyState() {
  const state = document.getElementById("key-state");
  state.textContent = key.get() ? "key set (this tab)" : "no key";
}

function keyBox() {
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  form.addEventListener("submit", (event) => {
    event.preventDefault(); // never a navigation: the key must not reach a URL
    if (input.value.trim()) key.set(input.value.trim());
    input.value = "";
    showKeyState();
    route();
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    key.forget();
    showKeyState();
    route();
  });
  showKeyState();
}

window.addEventListener("hashchange", route);
function start() {
  keyBox();
  route();
}

// A module runs after the document is parsed; the listener is for a browser that differs.
if (document.readyState === "loading") window.addEventListener("DOMContentLoaded", start, { once: true });
else start();
