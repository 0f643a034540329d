// Starts Swagger UI on /api/docs. A file of its own, not an inline script, so the page's
// Content-Security-Policy can forbid inline script altogether.
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  displayRequestDuration: true,
  validatorUrl: null
});
