// The calls the seed service's own scripts make, written again with axios as they use it:
// the auth flow (sign-up, login, profile, refresh with the refresh token as Bearer and a body
// of {}, logout with a body of {}, refresh after logout) and the heavy-load scenario (50
// sign-ups at once from one address). Prints one JSON line of what happened.
//
//   node seed_flow.mjs http://127.0.0.1:8000
import axios from "axios";

const api = axios.create({ baseURL: process.argv[2], validateStatus: () => true });
const bearer = (token) => ({ headers: { Authorization: `Bearer ${token}` } });
const stamp = Date.now();
const password = "orbit lantern meadow 42";

async function authFlow() {
  const email = `seed-${stamp}@example.com`;
  const statuses = {};
  const signup = await api.post("/users/signup", { name: "Seed", email, password });
  statuses.signup = signup.status;
  const login = await api.post("/users/login", { email, password });
  statuses.login = login.status;
  const { access_token: access, refresh_token: refresh } = login.data;
  statuses.profile = (await api.get("/users/profile", bearer(access))).status;
  const refreshed = await api.post("/users/refresh", {}, bearer(refresh));
  statuses.refresh = refreshed.status;
  const pair = refreshed.data;
  statuses.logout = (await api.post("/users/logout", {}, bearer(pair.access_token))).status;
  statuses.refreshAfterLogout = (await api.post("/users/refresh", {}, bearer(pair.refresh_token))).status;
  return statuses;
}

async function heavyLoad() {
  const requests = Array.from({ length: 50 }, (_, i) =>
    api.post("/users/signup", { name: `Load ${i}`, email: `load-${stamp}-${i}@example.com`, password }),
  );
  const responses = await Promise.all(requests);
  const counts = {};
  for (const response of responses) {
    counts[response.status] = (counts[response.status] || 0) + 1;
  }
  return counts;
}

const flow = await authFlow();
const load = await heavyLoad();
console.log(JSON.stringify({ flow, load }));
