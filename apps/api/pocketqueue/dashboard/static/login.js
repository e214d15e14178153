// The login page: the only thing to do in script is to say why a login was refused
// (the server redirects back here with ?error=1).
const refused = new URLSearchParams(window.location.search).get('error') === '1';
document.getElementById('login-error').hidden = !refused;
