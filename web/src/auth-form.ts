/** Sign up / sign in, as one small form. Sign-up creates the account; signing in is its own step. */
import { ApiError } from './api.js';
import { signIn, signUp } from './auth.js';
import { errorMessage, field, h, statusLine } from './dom.js';

/** Server rules, repeated here only to say them up front; the server's answer is what counts. */
const PASSWORD_MIN_LENGTH = 10;

function friendly(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.code === 'unauthenticated') return 'That email and password do not match an account.';
    if (error.code === 'already_exists')
      return 'An account with that email or username already exists. Sign in instead.';
    if (error.code === 'resource_exhausted') return 'Too many attempts. Wait a minute and try again.';
  }
  return errorMessage(error);
}

/** A username from the email's local part, for people who leave the username empty. */
function usernameFrom(email: string): string {
  const base = (email.split('@')[0] ?? '').replace(/[^A-Za-z0-9_]/g, '_').slice(0, 24);
  return base.length >= 3 ? base : `user_${base}`;
}

export function authForm(heading: string): HTMLElement {
  const email = h('input', {
    type: 'email',
    name: 'email',
    autocomplete: 'email',
    required: true,
    'data-testid': 'email',
  });
  const password = h('input', {
    type: 'password',
    name: 'password',
    autocomplete: 'current-password',
    required: true,
    minlength: PASSWORD_MIN_LENGTH,
    'data-testid': 'password',
  });
  const username = h('input', {
    type: 'text',
    name: 'username',
    autocomplete: 'username',
    'data-testid': 'username',
  });
  const signInButton = h('button', { type: 'submit', class: 'primary', 'data-testid': 'sign-in' }, 'Sign in');
  const signUpButton = h('button', { type: 'button', 'data-testid': 'sign-up' }, 'Create account');
  const status = statusLine('auth-status');

  const form = h(
    'form',
    { class: 'panel', 'aria-labelledby': 'auth-heading', novalidate: true },
    h('h2', { id: 'auth-heading' }, heading),
    field('Email', email),
    field(
      'Password',
      password,
      `New accounts: at least ${PASSWORD_MIN_LENGTH} characters, mixing three of lowercase, uppercase, digits and symbols.`,
    ),
    field('Username', username, 'Only needed to create an account; shown to your listeners.'),
    h('div', { class: 'actions' }, signInButton, signUpButton),
    status.element,
  );

  const busy = (on: boolean) => {
    // A disabled button drops focus to <body>; keep it in the form so that the view
    // replacing the form on success can take it over (replaceContent).
    if (on && form.contains(document.activeElement)) {
      form.tabIndex = -1;
      form.focus({ preventScroll: true });
    }
    signInButton.disabled = on;
    signUpButton.disabled = on;
    form.setAttribute('aria-busy', String(on));
  };
  const controls: Record<string, HTMLInputElement> = { email, password, username };
  const invalid = (control: HTMLInputElement | null, message: string) => {
    for (const input of Object.values(controls)) input.removeAttribute('aria-invalid');
    status.error(message);
    if (control) {
      control.setAttribute('aria-invalid', 'true');
      control.focus();
    }
  };
  const check = (creating: boolean): boolean => {
    if (!email.value.trim() || !email.validity.valid) {
      invalid(email, 'Enter a valid email address.');
      return false;
    }
    if (!password.value || (creating && [...password.value].length < PASSWORD_MIN_LENGTH)) {
      invalid(
        password,
        creating ? `The password needs at least ${PASSWORD_MIN_LENGTH} characters.` : 'Enter your password.',
      );
      return false;
    }
    return true;
  };
  const failed = (error: unknown) => {
    const control = error instanceof ApiError && error.field ? (controls[error.field] ?? null) : null;
    invalid(control, friendly(error));
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!check(false)) return;
    busy(true);
    status.info('Signing in…');
    try {
      // Success replaces this form (the page follows the session change).
      await signIn(email.value.trim(), password.value);
    } catch (error) {
      failed(error);
      busy(false);
    }
  });

  signUpButton.addEventListener('click', async () => {
    if (!check(true)) return;
    busy(true);
    status.info('Creating your account…');
    try {
      await signUp(
        email.value.trim(),
        password.value,
        username.value.trim() || usernameFrom(email.value.trim()),
      );
      for (const input of Object.values(controls)) input.removeAttribute('aria-invalid');
      status.info('Account created. You can sign in now.');
    } catch (error) {
      failed(error);
    } finally {
      busy(false);
    }
  });

  return form;
}
