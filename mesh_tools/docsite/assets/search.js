// Search across domains, products, models and columns. The index is split per domain
// (search/<domain>.js, loaded with <script> tags so it works from file://) and loaded on first use.
(function () {
  var input = document.getElementById("search-input");
  var list = document.getElementById("search-results");
  if (!input || !list) return;
  var root = document.body.getAttribute("data-root") || "";
  var domains = JSON.parse(document.body.getAttribute("data-domains") || "[]");
  var loaded = null;

  function load() {
    if (loaded) return loaded;
    loaded = Promise.all(domains.map(function (name) {
      return new Promise(function (resolve) {
        var script = document.createElement("script");
        script.src = root + "search/" + encodeURIComponent(name) + ".js";
        script.onload = script.onerror = resolve;
        document.head.appendChild(script);
      });
    }));
    return loaded;
  }

  function render(query) {
    var words = query.toLowerCase().split(/\s+/).filter(Boolean);
    list.innerHTML = "";
    if (!words.length) return;
    var rank = { product: 0, domain: 1, model: 2, column: 3 };
    var hits = (window.meshSearch || []).filter(function (e) {
      var hay = (e[1] + " " + e[2] + " " + e[4]).toLowerCase();
      return words.every(function (w) { return hay.indexOf(w) >= 0; });
    });
    hits.sort(function (a, b) {
      var exact = (b[1].toLowerCase() === words.join(" ")) - (a[1].toLowerCase() === words.join(" "));
      return exact || rank[a[0]] - rank[b[0]] || a[1].localeCompare(b[1]);
    });
    hits.slice(0, 50).forEach(function (e) {
      var li = document.createElement("li");
      li.className = "hit hit-" + e[0];
      var a = document.createElement("a");
      a.href = root + e[3];
      a.textContent = e[1];
      var kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = e[0];
      var where = document.createElement("div");
      where.className = "where";
      where.textContent = e[2] + (e[4] ? " — " + e[4] : "");
      li.appendChild(kind); li.appendChild(a); li.appendChild(where);
      list.appendChild(li);
    });
    if (!hits.length) {
      var none = document.createElement("li");
      none.textContent = "Nothing found.";
      list.appendChild(none);
    }
  }

  input.addEventListener("focus", load);
  input.addEventListener("input", function () {
    var query = input.value;
    load().then(function () { if (input.value === query) render(query); });
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { input.value = ""; list.innerHTML = ""; }
  });
})();
