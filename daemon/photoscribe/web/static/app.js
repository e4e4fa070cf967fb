// photoscribe's web page: plain JavaScript, no build step.
// "/" focuses the search box; Escape leaves it.
document.addEventListener("keydown", (event) => {
  const box = document.getElementById("q");
  if (!box) return;
  if (event.key === "/" && document.activeElement !== box) {
    event.preventDefault();
    box.focus();
    box.select();
  } else if (event.key === "Escape" && document.activeElement === box) {
    box.blur();
  }
});
