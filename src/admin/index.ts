/** Day-to-day administration (docs/admin.md): the account directory and the profile updates. */
export * from './account.js';
export * from './updates.js';
