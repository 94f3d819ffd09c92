// Swagger UI started from a file (strict CSP: no inline scripts).
window.addEventListener("load", function () {
  var el = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({url: el.getAttribute("data-openapi"), dom_id: "#swagger-ui"});
});
